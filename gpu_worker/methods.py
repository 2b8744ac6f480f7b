"""Decoding kinds as registered classes: what each kind does, in one place.

The contract (`contract/methods.py`) states each kind's settings and defaults as data (`KINDS`)
and parses a playbook's `methods:` into `Method`s; this module holds the behaviour. Every kind is
a `Kind` subclass registered with `@register_kind(NAME)` (`KIND_CLASSES`, whose names equal
`KINDS`); `kind_of(method)` gives the object that:

- `generate_kwargs(max_new_tokens)`: the arguments of `generate` (no inputs, no adapters);
- `decode(engine, images, first, max_new_tokens)`: one batch's texts (`first`: the batch's first
  sample index, which seeds sampling); `lines(...)`: the fields each image's predictions line
  gets (`prediction`, and `nbest` for a beam that keeps its hypotheses);
- `relative_cost(n_checkpoints)`: cost per image relative to greedy on one checkpoint (the ETA);
- `needs_model`, `checkpoints_needed(adapters)` (the adapter names it decodes with; MethodError
  when one is missing: the pre-check), `check()` (what it needs on this host, e.g. Tesseract),
  `order(samples, pending)` (the batching order), `lora_path(engine)` (how it runs its LoRA).

The kinds:
- `greedy`                       one checkpoint (`adapter`), greedy
- `beam`      num_beams nbest    beam search, best beam; `nbest: N` keeps the N best hypotheses
                                 with their scores in predictions.jsonl (`nbest.py`)
- `sample`    temperature top_p seed   temperature sampling, seeded per batch: reproducible
- `ensemble`  checkpoints vote   greedy on every checkpoint in ONE batched call (rows
                                 adapter-major), then voting (`ensemble.RULES`), or `vote: logits`:
                                 the checkpoints' log-probs averaged at every step, one string
- `combined`  num_beams checkpoints vote   beam search on every checkpoint, then voting
- `tesseract` lang psm           Tesseract OCR (see `tesseract.py`), no model at all

`adapter` (single-model kinds) names a checkpoint folder, `last` (the default: the newest
checkpoint), or `base` (no adapter). `checkpoints` (ensembles) is `all` or a list of names.
Importing this module loads no torch: the engine and Tesseract are reached through arguments
or lazy imports.
"""

from __future__ import annotations

from collections.abc import Callable

from .contract.methods import TOKEN_VOTE, Method, MethodError


class Kind:
    """A decoding kind's behaviour for one `Method` (subclasses register with `register_kind`)."""

    name = ""

    def __init__(self, method: Method) -> None:
        self.method = method

    @property
    def needs_model(self) -> bool:
        """Whether it decodes with the transformers model (the contract's backend table)."""
        return self.method.needs_model

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        """Arguments for `generate` (without inputs and adapters)."""
        return {}

    def decode(self, engine, images: list, first: int, max_new_tokens: int) -> list[str]:
        """The texts of one batch of `images` (`first`: the first image's sample index)."""
        raise NotImplementedError

    def lines(self, engine, images: list, first: int, max_new_tokens: int) -> list[dict]:
        """Per image, the fields its predictions line gets from decoding."""
        return [{"prediction": t} for t in self.decode(engine, images, first, max_new_tokens)]

    def relative_cost(self, n_checkpoints: int) -> float:
        """Cost per image relative to greedy on one checkpoint: beams x rows."""
        return 1.0

    def checkpoints_needed(self, adapters: list[str]) -> list[str | None]:
        """The adapter names it decodes with (None: the base model); MethodError if missing."""
        return []

    def check(self) -> None:
        """Raise when something it needs is not installed on this host."""

    def order(self, samples, pending: list[int]) -> list[int]:
        """The order its pending indices are batched in."""
        return list(pending)

    def lora_path(self, engine) -> str | None:
        """How it runs its checkpoints on `engine` (see `_Model.lora_path`); None: no model."""
        return None


KIND_CLASSES: dict[str, type[Kind]] = {}


def register_kind(name: str) -> Callable[[type[Kind]], type[Kind]]:
    """Class decorator: `name` (a kind of the contract's `KINDS`) decodes with this class."""

    def add(cls: type[Kind]) -> type[Kind]:
        cls.name = name
        KIND_CLASSES[name] = cls
        return cls

    return add


def kind_of(method: Method) -> Kind:
    """The behaviour of `method`'s kind."""
    return KIND_CLASSES[method.kind](method)


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


class _Model(Kind):
    """A kind decoding with the transformers model; images batched by width, prefetched."""

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        beams = self.method.num_beams
        kw: dict = {"max_new_tokens": self.method.max_new_tokens or max_new_tokens}
        kw.update(do_sample=False, num_beams=beams)
        if beams > 1:
            kw["early_stopping"] = True
        return kw

    def order(self, samples, pending: list[int]) -> list[int]:
        from .data import by_width

        return by_width(samples, pending)

    def lora_path(self, engine) -> str | None:
        """`merged` (one adapter folded into the weights), `stacked` (several at once), `base`
        (no adapter), or `peft (why)`; None without an engine."""
        if engine is None:
            return None
        if not self._uses_adapter(engine):
            return "base"
        if engine.mode == "peft":
            return f"peft ({engine.peft_reason})"
        return self._fast_path

    _fast_path = "merged"

    def _uses_adapter(self, engine) -> bool:
        return bool(engine.adapters) and self.method.adapter != "base"


class _Single(_Model):
    """One checkpoint (`adapter`) over the batch."""

    def checkpoints_needed(self, adapters: list[str]) -> list[str | None]:
        return [resolve_adapter(self.method, adapters)]

    def _seed(self, first: int) -> int | None:
        return None

    def decode(self, engine, images: list, first: int, max_new_tokens: int) -> list[str]:
        adapter = resolve_adapter(self.method, engine.adapters)
        gen = self.generate_kwargs(max_new_tokens)
        return engine.generate(images, [adapter] * len(images), seed=self._seed(first), **gen)


@register_kind("greedy")
class Greedy(_Single):
    """Greedy decoding on one checkpoint."""


@register_kind("beam")
class Beam(_Single):
    """Beam search; with `nbest` the N best hypotheses are kept beside the best one."""

    def relative_cost(self, n_checkpoints: int) -> float:
        return float(max(1, self.method.num_beams))

    def lines(self, engine, images: list, first: int, max_new_tokens: int) -> list[dict]:
        if not self.method.nbest:
            return super().lines(engine, images, first, max_new_tokens)
        from .nbest import generate_nbest

        adapter = resolve_adapter(self.method, engine.adapters)
        gen = self.generate_kwargs(max_new_tokens)
        hyps = generate_nbest(engine, images, adapter, self.method.nbest, **gen)
        return [{"prediction": h[0][0], "nbest": [list(x) for x in h]} for h in hyps]


@register_kind("sample")
class Sample(_Single):
    """Temperature sampling, seeded with `seed + first` so a batch decodes the same each time."""

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        m = self.method
        return {
            "max_new_tokens": m.max_new_tokens or max_new_tokens,
            "do_sample": True,
            "temperature": m.temperature,
            "top_p": m.top_p,
        }

    def _seed(self, first: int) -> int | None:
        return int(self.method.seed or 0) + first


@register_kind("ensemble")
class Ensemble(_Model):
    """Every chosen checkpoint on every image in one batch (rows adapter-major), then a vote."""

    _fast_path = "stacked"

    def _uses_adapter(self, engine) -> bool:
        return True

    def _rows(self, n_checkpoints: int) -> int:
        chosen = self.method.checkpoints
        return max(1, n_checkpoints if chosen == "all" else len(chosen or ()))

    def relative_cost(self, n_checkpoints: int) -> float:
        return float(max(1, self.method.num_beams) * self._rows(n_checkpoints))

    def checkpoints_needed(self, adapters: list[str]) -> list[str | None]:
        return list(resolve_checkpoints(self.method, adapters))

    def decode(self, engine, images: list, first: int, max_new_tokens: int) -> list[str]:
        from .ensemble import vote

        names = resolve_checkpoints(self.method, engine.adapters)
        logits = self.method.vote == TOKEN_VOTE
        gen = self.generate_kwargs(max_new_tokens)
        per_image = engine.generate_ensemble(images, names, logits=logits, **gen)
        if logits:
            return [texts[0] for texts in per_image]
        return [vote(texts, self.method.vote) for texts in per_image]


@register_kind("combined")
class Combined(Ensemble):
    """Beam search on every chosen checkpoint, then a vote (`num_beams` x checkpoints rows)."""


@register_kind("tesseract")
class Tesseract(Kind):
    """Tesseract OCR on each image (`tesseract.py`): no model, no batching order."""

    def decode(self, engine, images: list, first: int, max_new_tokens: int) -> list[str]:
        from .tesseract import recognize

        return [recognize(img, self.method) for img in images]

    def check(self) -> None:
        from .tesseract import check

        check(str(self.method.binary), str(self.method.lang))  # filled in from KINDS
