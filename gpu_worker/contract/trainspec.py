"""The rules of a training playbook (one with a `train:` section). Standard library only.

`parse_train(doc, name)` resolves the playbook into its full spec (`TrainSpec.doc`: `model`,
`data`, `generation`, `scoring`, `train`, `lora` with every default filled in, `outputs`
defaulting to `["checkpoints/"]`) and validates it; errors name the field, as `spec.py` does.
The defaults live in `spec.SECTIONS["train"]` and `["lora"]`, so `--set train.lr=1e-4` is checked
like any other setting. A full spec resolves to itself, so the host reads back what `orch run`
sent. `generation.batch_size` and `.max_new_tokens` drive the held-out CER decoding, `scoring`
its normalisation; `data.holdout` names the held-out rows, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from .checks import PROMPT_FORMATS
from .spec import FILLED, SECTIONS, PlaybookError, _known, _mapping

TRAIN_SECTIONS = ("train", "lora")
OUTPUTS = ["checkpoints/"]
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_8bit")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts")
BF16 = ("auto", True, False)
_COUNTS = {  # setting -> lowest value
    "steps": 1,
    "batch_size": 1,
    "grad_accum": 1,
    "warmup_steps": 0,
    "eval_every": 0,  # 0: no held-out CER during training
    "eval_samples": 1,
    "save_every": 1,
    "log_every": 1,
    "seed": 0,
    "guard_steps": 1,
}


@dataclass(frozen=True)
class TrainSpec:
    """A training playbook as the worker uses it; `doc` is the full spec it was read from."""

    name: str
    digest: str
    model: dict
    data: dict
    generation: dict
    scoring: dict
    train: dict
    lora: dict
    doc: dict = field(default_factory=dict, compare=False)


def is_train(doc: object) -> bool:
    """Whether `doc` is a training playbook (it has a `train:` section)."""
    return isinstance(doc, dict) and "train" in doc


def resolve_train(doc: object, name: str = "playbook") -> dict:
    """The full spec of a training playbook: every section and setting, defaults filled in."""
    if not isinstance(doc, dict):
        raise PlaybookError("expected a mapping at the top level")
    _known(SECTIONS, doc, "", "unknown section")
    if "methods" in doc or "command" in doc:
        raise PlaybookError("train: a training playbook has no `methods:` or `command:`")
    full: dict = {"name": str(doc.get("name") or name)}
    for key in ("description", "slurm"):
        if doc.get(key) is not None:
            full[key] = doc[key]
    for section in (*FILLED, *TRAIN_SECTIONS):
        given = _mapping(doc.get(section), section)
        _known(SECTIONS[section] or {}, given, f"{section}.", "unknown setting")
        full[section] = {k: given.get(k, d) for k, d in (SECTIONS[section] or {}).items()}
    full["outputs"] = doc.get("outputs") or list(OUTPUTS)
    return full


def parse_train(doc: object, name: str = "playbook") -> TrainSpec:
    """Resolve and validate a training playbook (errors name the field)."""
    full = resolve_train(doc, name)
    model, data, train, lora = full["model"], full["data"], full["train"], full["lora"]
    if not (model["base"] or model["tiny"]):
        raise PlaybookError("model.base: missing (a hub name or a local folder)")
    if model["prompt_format"] not in PROMPT_FORMATS:
        raise PlaybookError(
            f"model.prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, "
            f"got {model['prompt_format']!r}"
        )
    if model["prompt_format"] == "raw" and "{image}" not in str(model["prompt"] or ""):
        raise PlaybookError("model.prompt: a raw prompt must contain {image}")
    if data["source"] is None:
        raise PlaybookError("data.source: missing (a labels.jsonl folder, datasets folder or name)")
    _check_holdout(data["holdout"], train["eval_every"])
    n = data["n_samples"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise PlaybookError(f"data.n_samples: expected a positive integer or null, got {n!r}")
    _check_train(train)
    _check_lora(lora)
    for key in ("batch_size", "max_new_tokens"):
        value = full["generation"][key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlaybookError(f"generation.{key}: expected a positive integer, got {value!r}")
    canonical = json.dumps(full, sort_keys=True, ensure_ascii=False, default=str)
    return TrainSpec(
        name=full["name"],
        digest=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        doc=full,
        **{k: full[k] for k in ("model", "data", "generation", "scoring", "train", "lora")},
    )


def _number(value: object, where: str, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise PlaybookError(f"{where}: expected a number in [{low}, {high}), got {value!r}")


def _count(value: object, where: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PlaybookError(f"{where}: expected an integer >= {low}, got {value!r}")


def _check_holdout(holdout: object, eval_every: object) -> None:
    """`data.holdout: {test_size, seed}`; required when `train.eval_every` > 0."""
    if holdout is None:
        if eval_every:
            raise PlaybookError(
                "data.holdout: missing; the held-out CER needs lines never trained on, e.g. "
                "{test_size: 0.1, seed: 42} (or set train.eval_every: 0)"
            )
        return
    if not isinstance(holdout, dict) or set(holdout) != {"test_size", "seed"}:
        raise PlaybookError(f"data.holdout: expected {{test_size: 0.1, seed: 42}}, got {holdout!r}")
    size = holdout["test_size"]
    if isinstance(size, float):
        _number(size, "data.holdout.test_size", 0.0, 1.0)
        if size == 0:
            raise PlaybookError("data.holdout.test_size: expected a fraction above 0")
    else:
        _count(size, "data.holdout.test_size", 1)
    _count(holdout["seed"], "data.holdout.seed", 0)


def _check_train(train: dict) -> None:
    for key, low in _COUNTS.items():
        _count(train[key], f"train.{key}", low)
    if train["save_limit"] is not None:
        _count(train["save_limit"], "train.save_limit", 1)
    _number(train["lr"], "train.lr", 0.0)
    _number(train["weight_decay"], "train.weight_decay", 0.0)
    _number(train["max_grad_norm"], "train.max_grad_norm", 0.0)
    for key, known in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("bf16", BF16)):
        if train[key] not in known:
            raise PlaybookError(
                f"train.{key}: expected one of {', '.join(map(str, known))}, got {train[key]!r}"
            )
    if not isinstance(train["gradient_checkpointing"], bool):
        raise PlaybookError("train.gradient_checkpointing: expected true or false")


def _check_lora(lora: dict) -> None:
    _count(lora["r"], "lora.r", 1)
    _number(lora["alpha"], "lora.alpha", 0.0)
    _number(lora["dropout"], "lora.dropout", 0.0, 1.0)
    targets = lora["target_modules"]
    ok = targets is None or (isinstance(targets, str) and targets)
    ok = ok or (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets))
    if not ok:
        raise PlaybookError(
            "lora.target_modules: expected null (the language model's projections), a list of "
            f"projection names or a regular expression, got {targets!r}"
        )
