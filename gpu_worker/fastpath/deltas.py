"""How much each loaded LoRA checkpoint changes the base weights, from the tensors the engine
holds (not the files), on the fast path (`LoraBank`) and the peft path alike.

`adapter_report(engine)` -> `{"adapters": {name: {"relative_delta": r, "modules": m}},
"identical": [[name, ...], ...]}`: r = |sum over touched projections of scaling * B @ A|_F /
|W|_F of those projections, computed without forming B @ A (|BA|_F² = tr((BᵀB)(AAᵀ))), in
float32; `identical` groups checkpoints whose A, B and scalings are equal tensor for tensor.
"""

from __future__ import annotations

import torch


def _fast_layers(bank) -> dict[str, dict[str, tuple]]:
    out = {}
    for name, adapter in bank.adapters.items():
        layers = adapter.layers.items()
        out[name] = {m: (a, b, s, bank.saved.get(m, bank._weight(m))) for m, (a, b, s) in layers}
    return out


def _peft_layers(model) -> dict[str, dict[str, tuple]]:
    """Per adapter: module -> (A, B, scaling, base weight) from peft's LoRA layers."""
    out: dict[str, dict[str, tuple]] = {}
    for module_name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if not all(isinstance(x, torch.nn.ModuleDict) for x in (lora_a, lora_b)):
            continue
        weight = module.get_base_layer().weight
        for name in lora_a:
            scaling = float(module.scaling[name])
            layers = out.setdefault(name, {})
            layers[module_name] = (lora_a[name].weight, lora_b[name].weight, scaling, weight)
    return out


def _norm2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float(torch.trace((b.t() @ b) @ (a @ a.t())).clamp(min=0))


def _same(x: dict, y: dict) -> bool:
    if x.keys() != y.keys():
        return False
    for m, (a, b, s, _) in x.items():
        a2, b2, s2, _ = y[m]
        if s != s2 or a.shape != a2.shape or b.shape != b2.shape:
            return False
        if not (torch.equal(a, a2.to(a.device)) and torch.equal(b, b2.to(b.device))):
            return False
    return True


@torch.no_grad()
def adapter_report(engine) -> dict:
    """The relative delta of every loaded adapter and the groups of identical ones."""
    if engine is None or not engine.adapters:
        return {"adapters": {}, "identical": []}
    layers = _fast_layers(engine.bank) if engine.bank is not None else _peft_layers(engine.model)
    adapters = {}
    for name, mods in layers.items():
        delta = sum(s * s * _norm2(a, b) for a, b, s, _ in mods.values())
        base = sum(float(w.detach().float().pow(2).sum()) for *_, w in mods.values())
        rel = (delta**0.5) / (base**0.5) if base > 0 else float(delta > 0)
        adapters[name] = {"relative_delta": rel, "modules": len(mods)}
    groups: list[list[str]] = []
    for name in layers:
        for group in groups:
            if _same(layers[group[0]], layers[name]):
                group.append(name)
                break
        else:
            groups.append([name])
    return {"adapters": adapters, "identical": [g for g in groups if len(g) > 1]}
