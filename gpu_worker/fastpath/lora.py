"""LoRA checkpoints without peft: read them, merge one into the base in place, or stack several.

- `read_adapter(folder, model)` reads `adapter_config.json` + the weights (safetensors or
  `.bin`, any transformers 4.4x–5.x key layout: `adapters.py`; a tensor matching no module is a
  `LoadError`):
  per target module A `[r, in]`, B `[out, r]` and scaling (`lora_alpha / r`, or `/ sqrt(r)` with
  rsLoRA; `rank_pattern` / `alpha_pattern` honoured). Anything this plain form cannot express
  (DoRA, biases, `modules_to_save`, non-Linear targets, the vision tower: its rows are patches,
  not adapter-major rows, and it runs once for all k adapters) raises `Unsupported`: the engine
  then keeps peft.
- `LoraBank.merge(name)` folds one adapter into the touched base projections in place,
  `W += scaling * (B @ A)` (peft's own order), after saving one copy of only those projections;
  the sum is taken in float32 and cast to the weights' dtype once (`cast_once`; False: the
  float32 delta is cast first and added in bf16, two roundings: benchmarks/worker.py measures
  both against peft's unmerged path);
  `merge(None)` / `restore()` copies the saved weights back: bit-identical base.
- `LoraBank.stacked(names)` swaps every touched projection for a `StackedLoRALinear` holding
  A `[k, in, r]`, B `[k, r, out]` and the k scalings; rows are adapter-major (row `a*n + i` is
  image i under adapter a), so `x.view(k, n*seq, in)` goes through two `torch.bmm` (in float32,
  as peft keeps adapter weights): fixed shapes, no per-adapter Python loop, compilable.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .adapters import AdapterFile, LoadError, Unsupported, key_renamer, read_checkpoint

__all__ = ["LoadError", "LoraBank", "Unsupported", "load_bank", "read_adapter"]

VISION = "visual."  # Qwen2.5-VL's vision tower: stacked rows there are patches, not adapter-major
UNSUPPORTED_FLAGS = ("use_dora", "lora_bias", "fan_in_fan_out", "use_qalora", "use_bdlora")
UNSUPPORTED_SETTINGS = (
    "modules_to_save",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
)


@dataclass
class Adapter:
    """One LoRA checkpoint: per module name, (A [r, in], B [out, r], scaling)."""

    name: str
    layers: dict[str, tuple[torch.Tensor, torch.Tensor, float]]


def _pattern_value(patterns: dict, module: str, default):
    """peft's rule: a pattern key applies when the module name ends with a match of it."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def check_config(config: dict, where: str) -> None:
    """Raise Unsupported naming the setting the fast path cannot express."""
    if config.get("peft_type", "LORA") != "LORA":
        raise Unsupported(f"{where}: peft_type {config.get('peft_type')} is not LoRA")
    for key in UNSUPPORTED_FLAGS:
        if config.get(key):
            raise Unsupported(f"{where}: {key} is not supported by the fast path")
    for key in UNSUPPORTED_SETTINGS:
        if config.get(key):
            raise Unsupported(f"{where}: {key} is not supported by the fast path")
    if config.get("bias", "none") != "none":
        raise Unsupported(f"{where}: bias={config['bias']} is not supported by the fast path")


def read_adapter(
    folder: str | Path, model: nn.Module, name: str | None = None, file: AdapterFile | None = None
) -> Adapter:
    """A peft LoRA checkpoint folder against `model` (Linear only). `file`: its tensors, already
    read and renamed by `adapters.read_checkpoint` (read here when not given)."""
    folder = Path(folder)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    check_config(config, str(folder / "adapter_config.json"))
    if file is None:
        file = read_checkpoint(folder, model, key_renamer(model))
    if file.other:
        raise Unsupported(f"{file.path}: {next(iter(file.other))}: a full weight in the adapter")
    layers = {}
    for module_name, ab in file.lora.items():
        module = model.get_submodule(module_name)
        where = f"{file.path}: {module_name}"
        if module_name.startswith(VISION) or f".{VISION}" in module_name:
            raise Unsupported(f"{where}: LoRA on the vision tower")
        if not isinstance(module, nn.Linear) or set(ab) != {"A", "B"}:
            raise Unsupported(f"{where} is not a Linear with lora_A and B")
        a, b = ab["A"], ab["B"]
        r = a.shape[0]
        if a.shape[1] != module.in_features or b.shape != (module.out_features, r):
            raise LoadError(
                f"{where}: LoRA shapes {tuple(a.shape)}, {tuple(b.shape)} do not "
                "match the model's: the adapter belongs to another base model"
            )
        alpha = _pattern_value(config.get("alpha_pattern"), module_name, config["lora_alpha"])
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        layers[module_name] = (a, b, float(scaling))
    return Adapter(name=name or folder.name, layers=layers)


class StackedLoRALinear(nn.Module):
    """`base(x) + scaling_a * (x_a @ A_a) @ B_a` for k adapters at once; rows adapter-major."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, scaling: torch.Tensor):
        super().__init__()
        self.base = base
        self.k = a.shape[0]
        self.register_buffer("lora_a", a, persistent=False)  # [k, in, r]
        self.register_buffer("lora_b", b, persistent=False)  # [k, r, out]
        self.register_buffer("scaling", scaling.view(-1, 1, 1), persistent=False)  # [k, 1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base projection plus each row's own adapter delta."""
        out = self.base(x)
        xk = x.reshape(self.k, -1, x.shape[-1]).to(self.lora_a.dtype)
        delta = torch.bmm(torch.bmm(xk, self.lora_a), self.lora_b) * self.scaling
        return out + delta.view(out.shape).to(out.dtype)


class LoraBank:
    """Every checkpoint's LoRA weights beside one base model; merges and stacks on demand."""

    def __init__(self, model: nn.Module, adapters: list[Adapter]) -> None:
        self.model = model
        self.adapters = {a.name: a for a in adapters}
        self.saved: dict[str, torch.Tensor] = {}
        self.merged: str | None = None
        self._stacks: dict[tuple, dict[str, StackedLoRALinear]] = {}
        self.cast_once = True

    @property
    def names(self) -> list[str]:
        """Adapter names in load order."""
        return list(self.adapters)

    def _weight(self, module_name: str) -> torch.Tensor:
        return self.model.get_submodule(module_name).weight

    @torch.no_grad()
    def restore(self) -> None:
        """Copy the saved base projections back (bit-identical); nothing merged afterwards."""
        if self.merged is not None:
            for module_name in self.adapters[self.merged].layers:
                self._weight(module_name).copy_(self.saved[module_name])
        self.merged = None

    @torch.no_grad()
    def merge(self, name: str | None) -> None:
        """Fold adapter `name` into the base weights in place (None: the plain base)."""
        if name == self.merged:
            return
        self.restore()
        if name is None:
            return
        for module_name, (a, b, scaling) in self.adapters[name].layers.items():
            weight = self._weight(module_name)
            if module_name not in self.saved:
                self.saved[module_name] = weight.detach().clone()
            a, b = a.to(weight.device, torch.float32), b.to(weight.device, torch.float32)
            delta = (b @ a) * scaling
            if self.cast_once:
                weight.copy_((weight.float() + delta).to(weight.dtype))
            else:
                weight.add_(delta.to(weight.dtype))
        self.merged = name

    @contextmanager
    def stacked(self, names: list[str | None]):
        """Within the block, touched projections run all `names` at once (rows adapter-major).

        `None` in `names` is the plain base (a zero delta). The wrappers of one `names` tuple
        are built once and reused, so a compiled model sees the same modules every batch.
        """
        self.restore()
        key = tuple(names)
        if key not in self._stacks:
            chosen = [self.adapters[n] if n is not None else Adapter("base", {}) for n in names]
            touched = sorted({m for a in chosen for m in a.layers})
            self._stacks[key] = {
                m: self._stack(self.model.get_submodule(m), m, chosen) for m in touched
            }
        wrappers = self._stacks[key]
        try:
            for module_name, wrapper in wrappers.items():
                self.model.set_submodule(module_name, wrapper)
            yield
        finally:
            for module_name, wrapper in wrappers.items():
                self.model.set_submodule(module_name, wrapper.base)

    def _stack(self, base: nn.Linear, module_name: str, chosen: list[Adapter]):
        rank = max(a.layers[module_name][0].shape[0] for a in chosen if module_name in a.layers)
        k, dev, dtype = len(chosen), base.weight.device, torch.float32  # as peft computes
        a_all = torch.zeros(k, base.in_features, rank, device=dev, dtype=dtype)
        b_all = torch.zeros(k, rank, base.out_features, device=dev, dtype=dtype)
        scaling = torch.zeros(k, device=dev, dtype=dtype)
        for i, adapter in enumerate(chosen):
            if module_name in adapter.layers:
                a, b, s = adapter.layers[module_name]
                a_all[i, :, : a.shape[0]] = a.t()
                b_all[i, : a.shape[0], :] = b.t()
                scaling[i] = s
        return StackedLoRALinear(base, a_all, b_all, scaling)


def load_bank(
    model: nn.Module, folders: list[str], names: list[str], files: list[AdapterFile] | None = None
) -> LoraBank:
    """Read every checkpoint folder into one LoraBank (raises Unsupported to keep peft)."""
    files = files or [None] * len(folders)
    return LoraBank(
        model,
        [read_adapter(f, model, n, a) for f, n, a in zip(folders, names, files, strict=True)],
    )
