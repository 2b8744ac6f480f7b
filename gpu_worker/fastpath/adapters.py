"""Read what any training stack wrote into a LoRA checkpoint folder, named for the loaded model.

Shared by the fast path (`lora.py`) and the peft reference path (`engine.py`). Contract:
- `read_tensors(folder)`: `adapter_model.safetensors`, else `adapter_model.bin`
  (`torch.load(..., weights_only=True)`); neither is a `LoadError`.
- `key_renamer(model)`: maps a saved key (without peft's `base_model.model.` prefix) to the
  loaded model's name, for every Qwen2.5-VL layout transformers 4.4x–5.x used
  (`model.layers.N…` → `model.language_model.layers.N…`, `visual.` → `model.visual.`,
  `language_model.lm_head` → `lm_head` …): the model class's own checkpoint-conversion mapping
  (transformers 5's `get_model_conversion_mapping`, renamings only), then `LEGACY_RULES`, keeping
  the first name that is a module of the model.
- `read_checkpoint(folder, model, renamer)` → `AdapterFile`: LoRA A/B pairs per module name and
  any full `embed_tokens`/`lm_head` weights the adapter carries. A tensor that names no module of
  the model is a `LoadError` naming the file and the key: never a silent no-op.
- `embedding_plan(files, model)`: adapters carrying `embed_tokens`/`lm_head` equal to the base's
  first rows are a vocabulary resize only → the vocabulary size to resize to; rows that differ
  (trained embeddings) are a `LoadError` (one line: file, key, what to do).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import CheckpointError

PREFIX = "base_model.model."
SAFETENSORS, BIN = "adapter_model.safetensors", "adapter_model.bin"
LORA_KEY = re.compile(r"(.+)\.lora_([AB])(?:\.[^.]+)?\.weight")
EMBEDDINGS = ("embed_tokens", "lm_head")
# Qwen2.5-VL layouts before transformers 4.52 (and `language_model.` ones of 4.52–4.5x's
# intermediate saves), for a transformers without the conversion mapping API
LEGACY_RULES = (
    (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
    (r"^visual\.", "model.visual."),
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^language_model\.(?!model\.|lm_head\.)", "model.language_model."),
)


class Unsupported(ValueError):
    """A checkpoint uses a feature the plain fast path does not implement (peft takes over)."""


LoadError = CheckpointError  # a checkpoint no path loads faithfully: the run must not start


@dataclass
class AdapterFile:
    """One checkpoint's tensors, renamed for the loaded model."""

    path: Path  # the weights file
    lora: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # module -> {A, B}
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # module -> full weight
    other: dict[str, torch.Tensor] = field(default_factory=dict)  # the model's key -> tensor
    keys: dict[str, str] = field(default_factory=dict)  # saved key -> the model's key


def weights_path(folder: str | Path) -> Path:
    """The adapter weights file of `folder` (safetensors preferred)."""
    folder = Path(folder)
    for name in (SAFETENSORS, BIN):
        if (folder / name).is_file():
            return folder / name
    raise LoadError(f"{folder}: no {SAFETENSORS} or {BIN}")


def read_tensors(folder: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file of `folder` and its tensors, as saved."""
    path = weights_path(folder)
    if path.name == SAFETENSORS:
        from safetensors.torch import load_file

        return path, load_file(str(path))
    tensors = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(tensors, dict):
        raise LoadError(f"{path}: expected a state dict, got {type(tensors).__name__}")
    return path, tensors


def _transformers_renamings(model: nn.Module) -> list:
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # a transformers without the conversion API: LEGACY_RULES only
        return []
    return [c for c in get_model_conversion_mapping(model) if isinstance(c, WeightRenaming)]


def key_renamer(model: nn.Module) -> Callable[[str], str]:
    """A function from a saved module name to one of `model`'s (unchanged when none fits)."""
    modules = dict(model.named_modules())
    renamings = _transformers_renamings(model)

    def rename(name: str) -> str:
        if name in modules:
            return name
        for renaming in renamings:
            name_out = renaming.rename_source_key(name)[0]
            if name_out in modules:
                return name_out
        chained = name
        for renaming in renamings:
            chained = renaming.rename_source_key(chained)[0]
        if chained in modules:
            return chained
        for pattern, target in LEGACY_RULES:  # rules end names with a dot: add one, drop it
            out = re.sub(pattern, target, name + ".", count=1)[:-1]
            if out in modules:
                return out
        return name

    return rename


def read_checkpoint(folder: str | Path, model: nn.Module, rename: Callable[[str], str]):
    """The LoRA pairs and embedding weights of `folder`, named for `model` (see module doc)."""
    path, tensors = read_tensors(folder)
    out = AdapterFile(path=path)
    for key, value in tensors.items():
        bare = key.removeprefix(PREFIX)
        match = LORA_KEY.fullmatch(bare)
        if match:
            module = rename(match.group(1))
            _module_or_error(model, module, path, key)
            out.lora.setdefault(module, {})[match.group(2)] = value
            suffix = bare[len(match.group(1)) :]
            out.keys[key] = PREFIX + module + suffix
            continue
        module = rename(bare.removesuffix(".weight"))
        if bare.endswith(".weight") and module.rsplit(".", 1)[-1] in EMBEDDINGS:
            _module_or_error(model, module, path, key)
            out.embeddings[module] = value
            out.keys[key] = PREFIX + module + ".weight"
            continue
        if bare.endswith(".weight") and _has_module(model, module):  # modules_to_save: peft only
            out.other[module + ".weight"] = value
            out.keys[key] = PREFIX + module + ".weight"
            continue
        raise LoadError(f"{path}: tensor {key} matches no module of the model")
    return out


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _module_or_error(model: nn.Module, module: str, path: Path, key: str) -> None:
    if not _has_module(model, module):
        raise LoadError(f"{path}: tensor {key} matches no module of the model (no {module})")


def embedding_plan(files: list[AdapterFile], model: nn.Module) -> int | None:
    """The vocabulary size to resize `model` to (None: leave it), or LoadError (see module doc)."""
    sizes = set()
    for adapter in files:
        for module, weight in adapter.embeddings.items():
            base = model.get_submodule(module).weight
            key = next(k for k, v in adapter.keys.items() if v == PREFIX + module + ".weight")
            rows = weight.shape[0]
            if weight.shape[1:] != base.shape[1:] or rows > base.shape[0]:
                raise LoadError(
                    f"{adapter.path}: {key} has shape {tuple(weight.shape)} against the base's "
                    f"{tuple(base.shape)}: the adapter was trained on another base model"
                )
            if not torch.equal(weight.to(base.device, base.dtype), base[:rows]):
                raise LoadError(
                    f"{adapter.path}: {key} holds trained embeddings (they differ from the "
                    "base's rows): not supported; merge the adapter into its base and set "
                    "model.base to the merged folder"
                )
            sizes.add(rows)
    if len(sizes) > 1:
        raise LoadError(f"the checkpoints resize the vocabulary to different sizes {sorted(sizes)}")
    return sizes.pop() if sizes else None


def attach_peft(model, checkpoints: list[str], names: list[str], files: list) -> object:
    """The peft reference path: peft adapters from the renamed state dicts (`files`, as
    `read_checkpoint` gave them), every tensor checked in place afterwards (else `LoadError`)."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict

    peft_model = None
    for path, name, file in zip(checkpoints, names, files, strict=True):
        config = PeftConfig.from_pretrained(path)
        config.inference_mode = True
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
        state = {
            f"{PREFIX}{m}.lora_{ab}.weight": t for m, p in file.lora.items() for ab, t in p.items()
        }
        state.update({PREFIX + k: v for k, v in file.other.items()})
        result = set_peft_model_state_dict(peft_model, state, adapter_name=name)
        stray = [k for k in result.unexpected_keys if f".{name}." in k or "lora_" in k]
        if stray:
            raise LoadError(
                f"{file.path}: tensor {stray[0]} matches no LoRA module of the model "
                "(is it in adapter_config.json's target_modules?)"
            )
        inner = peft_model.base_model.model
        for module, pair in file.lora.items():
            layer = inner.get_submodule(module)
            for ab, tensor in pair.items():
                held = getattr(layer, f"lora_{ab}", None)
                got = held[name].weight if held is not None and name in held else None
                if got is None or not torch.equal(got.detach().cpu(), tensor.to(got.dtype)):
                    raise LoadError(f"{file.path}: lora_{ab} of {module} did not load into peft")
    return peft_model
