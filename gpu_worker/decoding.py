"""Decoding methods: a playbook's `methods:` entries turned into batched `generate` calls.

Each method is `{kind: ..., ...}`; kinds live in one registry (`KINDS`), and an unknown kind or
setting is an error naming the known ones:

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

import math
from dataclasses import asdict, dataclass

from .ensemble import RULES, vote
from .schema import did_you_mean

COMMON = {"kind", "backend", "max_new_tokens"}
KINDS: dict[str, set[str]] = {
    "greedy": COMMON | {"adapter"},
    "beam": COMMON | {"adapter", "num_beams"},
    "sample": COMMON | {"adapter", "temperature", "top_p", "seed"},
    "ensemble": COMMON | {"checkpoints", "vote"},
    "combined": COMMON | {"checkpoints", "vote", "num_beams"},
    "tesseract": {"kind", "backend", "lang", "psm", "oem", "binary"},
}
MODEL_FREE = {"tesseract"}
TOKEN_VOTE = "logits"  # token-level voting inside generate (ensemble only), see fastpath/vote.py
BACKENDS = ("transformers", "tesseract")


class MethodError(ValueError):
    """A method entry in a playbook is invalid; the message names method and field."""


@dataclass(frozen=True)
class Method:
    """One decoding method with its settings."""

    name: str
    kind: str
    adapter: str = "last"
    num_beams: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    checkpoints: tuple[str, ...] | str = "all"
    vote: str = "mbr"
    max_new_tokens: int | None = None
    lang: str = "ori"
    psm: int = 7
    oem: int | None = None
    binary: str = "tesseract"

    @property
    def needs_model(self) -> bool:
        """False for backends that do not use the transformers model."""
        return self.kind not in MODEL_FREE

    def settings(self) -> dict:
        """The settings that define this method, for results.json."""
        keys = KINDS[self.kind] - {"kind"}
        out = {"kind": self.kind}
        for key, value in asdict(self).items():
            if key in keys and value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        """Arguments for `generate` (without inputs and adapters)."""
        kw = {"max_new_tokens": self.max_new_tokens or max_new_tokens}
        if self.kind == "sample":
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, num_beams=self.num_beams)
            if self.num_beams > 1:
                kw["early_stopping"] = True
        return kw


def parse_method(name: str, body: object) -> Method:
    """A `methods:` entry -> Method, or MethodError naming the field."""
    if not isinstance(body, dict):
        raise MethodError(f"methods.{name}: expected a mapping like {{kind: greedy}}")
    backend = body.get(
        "backend", "tesseract" if body.get("kind") == "tesseract" else "transformers"
    )
    if backend not in BACKENDS:
        raise MethodError(
            f"methods.{name}.backend: unknown '{backend}'{did_you_mean(backend, BACKENDS)}; "
            f"known: {', '.join(BACKENDS)}"
        )
    kind = body.get("kind", "tesseract" if backend == "tesseract" else None)
    if (backend == "tesseract") != (kind == "tesseract"):
        raise MethodError(f"methods.{name}: kind {kind} does not run on backend {backend}")
    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS)
        raise MethodError(f"methods.{name}.kind: unknown '{kind}'{hint}; known: {', '.join(KINDS)}")
    unknown = set(body) - KINDS[kind]
    if unknown:
        key = sorted(unknown)[0]
        raise MethodError(
            f"methods.{name}.{key}: not a setting of kind {kind}{did_you_mean(key, KINDS[kind])}"
        )
    values = {k: v for k, v in body.items() if k != "backend"}
    values["kind"] = kind
    if kind in ("beam", "combined"):
        values.setdefault("num_beams", 5)
    if isinstance(values.get("checkpoints"), list):
        values["checkpoints"] = tuple(str(c) for c in values["checkpoints"])
    rules = [*RULES, TOKEN_VOTE] if kind == "ensemble" else list(RULES)
    if values.get("vote", "mbr") not in rules:
        raise MethodError(
            f"methods.{name}.vote: unknown rule '{values['vote']}' for kind {kind}; "
            f"known: {', '.join(rules)}"
        )
    for key, low in (("num_beams", 1), ("max_new_tokens", 1), ("seed", 0), ("psm", 0)):
        v = values.get(key, low)  # bools are ints to Python: `num_beams: true` is refused too
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise MethodError(f"methods.{name}.{key}: expected an integer >= {low}, got {v!r}")
    for key in ("temperature", "top_p"):
        v = values.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise MethodError(f"methods.{name}.{key}: expected a positive number, got {v!r}")
    return Method(name=name, **values)


def parse_methods(methods: object) -> list[Method]:
    """The playbook's `methods:` mapping, in order."""
    if not isinstance(methods, dict) or not methods:
        raise MethodError("methods: expected a mapping of method name -> {kind: ...}")
    if "run" in methods:
        raise MethodError("methods.run: 'run' is reserved in results.json; pick another name")
    return [parse_method(str(name), body) for name, body in methods.items()]


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


def decode_batch(engine, method: Method, images: list, max_new_tokens: int, first_index: int):
    """Predictions for `images` with `method` on a loaded engine: one batched generate call.

    Ensembles put every (checkpoint, image) pair in the batch (rows adapter-major) and vote per
    image, or average log-probs per step (`vote: logits`). Sampling is seeded with
    `seed + first_index`, so a batch decodes the same way every time.
    """
    gen = method.generate_kwargs(max_new_tokens)
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
