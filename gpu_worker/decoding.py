"""Decoding methods: a playbook's `methods:` entries turned into batched `generate` calls.

Each method is `{kind: ..., ...}`; kinds, their settings and defaults live in one registry
(`spec.KINDS`), and an unknown kind or setting is an error naming the known ones:

- `greedy`                       one checkpoint (`adapter`), greedy
- `beam`      num_beams          beam search (3/5/7), best beam
- `sample`    temperature top_p seed   temperature sampling, seeded per batch: reproducible
- `ensemble`  checkpoints vote   greedy on every checkpoint in ONE batched call (rows
                                 adapter-major), then voting (`ensemble.RULES`), or `vote: logits`:
                                 the checkpoints' log-probs averaged at every step, one string
- `combined`  num_beams checkpoints vote   beam search on every checkpoint, then voting
- `tesseract` lang psm           Tesseract OCR (see `tesseract.py`), no model at all; written
                                 `backend: tesseract` (the others run on `backend: transformers`)

`adapter` (single-model kinds) names a checkpoint folder, `last` (the default: the newest
checkpoint), or `base` (no adapter). `checkpoints` (ensembles) is `all` or a list of names.
"""

from __future__ import annotations

from .contract.spec import TOKEN_VOTE, Method, MethodError
from .ensemble import vote


def generate_kwargs(method: Method, max_new_tokens: int) -> dict:
    """Arguments for `generate` (without inputs and adapters)."""
    kw: dict = {"max_new_tokens": method.max_new_tokens or max_new_tokens}
    if method.kind == "sample":
        kw.update(do_sample=True, temperature=method.temperature, top_p=method.top_p)
    else:
        kw.update(do_sample=False, num_beams=method.num_beams)
        if method.num_beams > 1:
            kw["early_stopping"] = True
    return kw


def resolve_adapter(method: Method, adapters: list[str]) -> str | None:
    """The adapter name a single-model method uses (None: the base model)."""
    if method.adapter == "base" or not adapters:
        if method.adapter not in ("base", "last"):
            raise MethodError(f"methods.{method.name}.adapter: no checkpoints are loaded")
        return None
    if method.adapter == "last":
        return adapters[-1]
    if method.adapter not in adapters:
        raise MethodError(
            f"methods.{method.name}.adapter: '{method.adapter}' not among {', '.join(adapters)}"
        )
    return method.adapter


def resolve_checkpoints(method: Method, adapters: list[str]) -> list[str]:
    """The adapter names an ensemble votes over."""
    if not adapters:
        raise MethodError(f"methods.{method.name}: an ensemble needs model.checkpoints")
    if method.checkpoints == "all":
        return list(adapters)
    missing = [c for c in method.checkpoints if c not in adapters]
    if missing:
        raise MethodError(
            f"methods.{method.name}.checkpoints: {', '.join(missing)} not among "
            f"{', '.join(adapters)}"
        )
    return list(method.checkpoints)


def lora_path(engine, method: Method) -> str | None:
    """How `method` runs its checkpoints on `engine`: `merged` (one adapter folded into the
    weights), `stacked` (several at once), `base` (no adapter), or `peft (why)`; None when it
    uses no model."""
    if engine is None or not method.needs_model:
        return None
    if method.kind in ("ensemble", "combined"):
        uses_adapter = True
    else:
        uses_adapter = bool(engine.adapters) and method.adapter != "base"
    if not uses_adapter:
        return "base"
    if engine.mode == "peft":
        return f"peft ({engine.peft_reason})"
    return "stacked" if method.kind in ("ensemble", "combined") else "merged"


def decode_batch(engine, method: Method, images: list, max_new_tokens: int, first_index: int):
    """Predictions for `images` with `method` on a loaded engine: one batched generate call.

    Ensembles put every (checkpoint, image) pair in the batch (rows adapter-major) and vote per
    image, or average log-probs per step (`vote: logits`). Sampling is seeded with
    `seed + first_index`, so a batch decodes the same way every time.
    """
    gen = generate_kwargs(method, max_new_tokens)
    if method.kind in ("ensemble", "combined"):
        names = resolve_checkpoints(method, engine.adapters)
        logits = method.vote == TOKEN_VOTE
        per_image = engine.generate_ensemble(images, names, logits=logits, **gen)
        if logits:
            return [texts[0] for texts in per_image]
        return [vote(texts, method.vote) for texts in per_image]
    adapter = resolve_adapter(method, engine.adapters)
    seed = method.seed + first_index if method.kind == "sample" else None
    return engine.generate(images, [adapter] * len(images), seed=seed, **gen)
