"""Decoding methods in a playbook (`methods:`), part of the contract: the kinds and their
settings with defaults (`KINDS`, stated here once) and the backend each runs on (`BACKEND_OF`),
as data; and `parse_methods`, which fills in and validates each entry into a `Method` (with its
derived methods, `postprocess:`, see `postprocess.py`); errors (`MethodError`, a
`PlaybookError`) name the method and the field. What each kind does is the worker's registry
(`gpu_worker/methods.py`). Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .checks import RULES
from .hints import did_you_mean
from .postprocess import KEYS as POSTPROCESS_KEYS
from .postprocess import SEPARATOR, Derived, PostprocessError, parse_postprocess
from .schema import RUN_KEY

# method kind -> {setting: default}; `kind` and `backend` are settings of every kind
_MODEL = {"max_new_tokens": None}  # None: generation.max_new_tokens
_ADAPTER = {"adapter": "last"}
_VOTERS = {"checkpoints": "all", "vote": "mbr"}
KINDS: dict[str, dict[str, object]] = {
    "greedy": {**_MODEL, **_ADAPTER},
    "beam": {**_MODEL, **_ADAPTER, "num_beams": 5, "nbest": None},  # nbest: hypotheses kept
    "sample": {**_MODEL, **_ADAPTER, "temperature": 1.0, "top_p": 1.0, "seed": 0},
    "ensemble": {**_MODEL, **_VOTERS},
    "combined": {**_MODEL, **_VOTERS, "num_beams": 5},
    "tesseract": {"lang": "ori", "psm": 7, "oem": None, "binary": "tesseract"},
}
# kind -> the backend it runs on (`backend:` may name it instead of the kind); the behaviour of
# each kind lives in the worker's registry (`gpu_worker/methods.py`, names equal to `KINDS`)
MODEL_BACKEND = "transformers"
BACKEND_OF: dict[str, str] = {kind: MODEL_BACKEND for kind in KINDS} | {"tesseract": "tesseract"}
BACKENDS = tuple(dict.fromkeys(BACKEND_OF.values()))
MODEL_FREE = {kind for kind, backend in BACKEND_OF.items() if backend != MODEL_BACKEND}
TOKEN_VOTE = "logits"  # token-level voting inside generate (ensemble only), see fastpath/vote.py
VOTE_RULES = {"ensemble": (*RULES, TOKEN_VOTE), "combined": RULES}  # per kind that votes
_INTEGERS = {"num_beams": 1, "max_new_tokens": 1, "seed": 0, "psm": 0, "nbest": 1}
_NULLABLE = {"max_new_tokens", "nbest"}


class PlaybookError(ValueError):
    """The playbook is invalid for the worker; the message names the field."""


class MethodError(PlaybookError):
    """A method entry in a playbook is invalid; the message names method and field."""


@dataclass(frozen=True)
class Method:
    """One decoding method. Only its kind's settings (`KINDS`) are set; the others stay None,
    except `num_beams`: the kinds without it decode one beam."""

    name: str
    kind: str
    adapter: str | None = None
    num_beams: int = 1
    nbest: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    checkpoints: tuple[str, ...] | str | None = None
    vote: str | None = None
    max_new_tokens: int | None = None
    lang: str | None = None
    psm: int | None = None
    oem: int | None = None
    binary: str | None = None
    postprocess: tuple[Derived, ...] = ()  # its derived methods (`postprocess.py`)

    @property
    def needs_model(self) -> bool:
        """False for backends that do not use the transformers model."""
        return self.kind not in MODEL_FREE

    def settings(self) -> dict:
        """The settings that define this method, for results.json."""
        out: dict = {"kind": self.kind}
        for key, value in asdict(self).items():
            if key in KINDS[self.kind] and value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


def _fail(cls: type[PlaybookError], where: str, text: str) -> PlaybookError:
    return cls(f"{where}: {text}")


def _known(keys: dict | set, got: dict, where: str, what: str, cls=PlaybookError) -> None:
    unknown = sorted(str(k) for k in set(got) - set(keys))
    if unknown:
        key = unknown[0]
        raise _fail(cls, f"{where}{key}", f"{what}{did_you_mean(key, keys)}")


def _only_kind(backend: str) -> str | None:
    """The kind a method naming only its `backend` gets: the backend's one kind, if one."""
    kinds = [k for k, b in BACKEND_OF.items() if b == backend]
    return kinds[0] if len(kinds) == 1 else None


def resolve_method(name: str, body: object) -> dict:
    """A `methods:` entry with its kind, backend and every setting of its kind filled in."""
    if not isinstance(body, dict):
        raise MethodError(f"methods.{name}: expected a mapping like {{kind: greedy}}")
    backend = body.get("backend", BACKEND_OF.get(str(body.get("kind")), MODEL_BACKEND))
    if backend not in BACKENDS:
        raise MethodError(
            f"methods.{name}.backend: unknown '{backend}'{did_you_mean(backend, BACKENDS)}; "
            f"known: {', '.join(BACKENDS)}"
        )
    kind = body.get("kind", _only_kind(backend))
    if kind in BACKEND_OF and BACKEND_OF[kind] != backend:
        raise MethodError(f"methods.{name}: kind {kind} does not run on backend {backend}")
    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS)
        raise MethodError(f"methods.{name}.kind: unknown '{kind}'{hint}; known: {', '.join(KINDS)}")
    keys = {"kind", "backend", *KINDS[kind], *POSTPROCESS_KEYS}
    _known(keys, body, f"methods.{name}.", f"not a setting of kind {kind}", MethodError)
    given = {k: body[k] for k in POSTPROCESS_KEYS if k in body}  # only when set
    return {
        "kind": kind,
        "backend": backend,
        **{k: body.get(k, d) for k, d in KINDS[kind].items()},
        **given,
    }


def parse_method(name: str, body: object) -> Method:
    """A `methods:` entry -> Method, or MethodError naming the field."""
    values = resolve_method(name, body)
    del values["backend"]
    given = {k: values.pop(k) for k in POSTPROCESS_KEYS if k in values}
    if isinstance(values.get("checkpoints"), list):
        values["checkpoints"] = tuple(str(c) for c in values["checkpoints"])
    rules = list(VOTE_RULES.get(values["kind"], ()))
    if "vote" in values and values["vote"] not in rules:
        raise MethodError(
            f"methods.{name}.vote: unknown rule '{values['vote']}' for kind {values['kind']}; "
            f"known: {', '.join(rules)}"
        )
    for key, low in _INTEGERS.items():
        v = values.get(key)  # bools are ints to Python: `num_beams: true` is refused too
        if key not in values or (v is None and key in _NULLABLE):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise MethodError(f"methods.{name}.{key}: expected an integer >= {low}, got {v!r}")
    for key in ("temperature", "top_p"):
        v = values.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise MethodError(f"methods.{name}.{key}: expected a positive number, got {v!r}")
    if values.get("nbest") is not None and values["nbest"] > values["num_beams"]:
        raise MethodError(
            f"methods.{name}.nbest: {values['nbest']} hypotheses need num_beams >= "
            f"{values['nbest']} (num_beams is {values['num_beams']})"
        )
    method = Method(name=name, **values)
    try:
        derived = parse_postprocess(name, given, method.settings())
    except PostprocessError as exc:
        raise MethodError(str(exc)) from None
    return replace(method, postprocess=derived) if derived else method


def parse_methods(methods: object) -> list[Method]:
    """The playbook's `methods:` mapping, in order."""
    if not isinstance(methods, dict) or not methods:
        raise MethodError("methods: expected a mapping of method name -> {kind: ...}")
    if RUN_KEY in methods:
        raise MethodError("methods.run: 'run' is reserved in results.json; pick another name")
    parsed = [parse_method(str(name), body) for name, body in methods.items()]
    names = [str(n) for n in methods]
    for m in parsed:
        for d in m.postprocess:
            if d.name in names:
                raise MethodError(f"methods.{m.name}.postprocess: {d.name} is a method already")
            names.append(d.name)
    if any(SEPARATOR in str(n) for n in methods):
        bad = next(str(n) for n in methods if SEPARATOR in str(n))
        raise MethodError(f"methods.{bad}: '{SEPARATOR}' is kept for derived methods")
    return parsed
