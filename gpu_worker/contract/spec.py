"""The playbook and method rules, shared by the orchestrator and the worker. Standard library only
(like `schema.py`): sections, settings and their defaults, method kinds, did-you-mean.

`parse_playbook(doc)` resolves a playbook into its full spec (every section and setting with its
default filled in; `RunSpec.doc`) and validates it into a `RunSpec`; errors name the field. `orch
run` sends `RunSpec.doc` to the host, and the worker reads it back with the same function (a full
spec resolves to itself). `check_key` says whether `--set a.b=v` names a setting. A playbook with
its own `command` is not the worker's: only its names and `--set` keys are checked.

Defaults are stated once: `SECTIONS` here for the sections, `KINDS` (`methods.py`) for each
method kind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .checks import (  # noqa: F401  (RULES ... LORA_PATHS: the contract's names, stated there)
    COMPILE_SETTINGS,
    DEFAULT_RESAMPLES,
    LORA_PATHS,
    NORMAL_FORMS,
    RULES,
    generation_problem,
    scoring_problem,
    settings_problem,
    shard_problem,
    template_problem,
)
from .hints import did_you_mean
from .methods import (  # noqa: F401  (KINDS ... Method: the playbook's methods, stated there)
    BACKENDS,
    KINDS,
    MODEL_FREE,
    TOKEN_VOTE,
    Method,
    MethodError,
    PlaybookError,
    _fail,
    _known,
    parse_method,
    parse_methods,
    resolve_method,
)
from .postprocess import scored_methods, text_problem

# section -> {setting: default}; None: a free value or a section checked elsewhere
SECTIONS: dict[str, dict[str, object] | None] = {
    "name": None,
    "description": None,
    "command": None,
    "job": None,  # settings of a playbook with its own `command` (tests' fake job)
    "outputs": None,  # paths or globs in the run folder listed and fetched (`orch fetch --outputs`)
    "model": {
        "base": None,
        "checkpoints": None,
        "tiny": None,
        "prompt": None,  # None: the engine's DEFAULT_PROMPT
        "prompt_format": "chat",  # chat | raw (`prompt` then a template holding {image})
        "device": "auto",
        "dtype": "auto",
    },
    "data": {
        "source": None,  # required
        "split": "test",
        "n_samples": None,  # None: the whole split
        "seed": 42,
        "image_column": "image",
        "text_column": "text",
        "shard": 0,
        "num_shards": 1,
        "script": "odia",  # the script predictions are written in (checks.SCRIPTS), or none
        "holdout": None,  # {test_size, seed}: score train_test_split's "test" rows (data.py)
    },
    "generation": {"batch_size": 8, "max_new_tokens": 128, "compile": "auto", "lora": "fast"},
    "scoring": {
        "normalize": "nfc",
        "collapse_whitespace": True,
        "cer_tolerance": 0.01,
        "bootstrap": DEFAULT_RESAMPLES,
        "baseline": None,  # None: the first method
        "preflight": "on",  # the gates before a long run (preflight.py): on | off
        "fail_on_noop": False,  # a no-op or duplicate checkpoint: an error, not a warning
        "group_by": None,  # a data column: per-group CER/WER and comparisons (summary.py)
    },
    "methods": None,
    # LoRA fine-tuning (`python -m gpu_worker train`), validated in contract/trainspec.py
    "train": {
        "steps": 500,
        "batch_size": 4,
        "grad_accum": 1,
        "lr": 2e-4,
        "optimizer": "adamw_torch",
        "scheduler": "cosine",
        "warmup_steps": 20,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "eval_every": 100,
        "eval_samples": 16,
        "save_every": 100,
        "save_limit": None,  # None: keep every checkpoint
        "log_every": 10,
        "seed": 42,
        "bf16": "auto",  # auto: on CUDA
        "gradient_checkpointing": False,
        "guard_steps": 5,  # K: loss 0/NaN/inf or gradient norm 0 this many steps in a row stops
    },
    "lora": {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": None,  # None: the language model's attention and MLP projections
    },
    # sbatch resources for `backend: slurm` hosts, read by orchestrator/backends/slurm.py
    "slurm": dict.fromkeys(
        ("partition", "account", "time", "mem", "gres", "gpus", "cpus_per_task")
    ),
}
FILLED = ("model", "data", "generation", "scoring")  # sections the full spec always holds

_DATA = SECTIONS["data"] or {}


@dataclass(frozen=True)
class DataSpec:
    """Where the samples come from and how many to score (defaults: `SECTIONS["data"]`)."""

    source: str
    split: str = str(_DATA["split"])
    n_samples: int | None = None
    seed: int = int(_DATA["seed"])  # type: ignore[call-overload]
    image_column: str = str(_DATA["image_column"])
    text_column: str = str(_DATA["text_column"])
    shard: int = int(_DATA["shard"])  # type: ignore[call-overload]
    num_shards: int = int(_DATA["num_shards"])  # type: ignore[call-overload]
    script: str = str(_DATA["script"])
    holdout: dict | None = None


@dataclass(frozen=True)
class RunSpec:
    """A playbook as the worker uses it; `doc` is the full spec it was read from."""

    name: str
    digest: str
    model: dict
    data: DataSpec
    methods: list[Method]
    batch_size: int
    max_new_tokens: int
    normalize: str
    collapse_whitespace: bool
    cer_tolerance: float
    compile: str
    lora: str
    bootstrap: int
    baseline: str
    doc: dict = field(default_factory=dict, compare=False)
    preflight: bool = True
    fail_on_noop: bool = False
    group_by: str | None = None

    @property
    def baseline_method(self) -> str:
        """`scoring.baseline` (the full spec fills in the first method)."""
        return self.baseline or self.methods[0].name


def _mapping(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(PlaybookError, where, "expected a mapping")
    return value


def resolve(doc: object, name: str = "playbook") -> dict:
    """The full spec of a worker playbook: every section and setting, defaults filled in.

    Unknown sections, settings and method kinds are errors naming the field (did you mean).
    """
    if not isinstance(doc, dict):
        raise PlaybookError("expected a mapping at the top level")
    _known(SECTIONS, doc, "", "unknown section")
    full: dict = {"name": str(doc.get("name") or name)}
    full.update(
        {k: v for k, v in doc.items() if SECTIONS[k] is None and k not in (*full, "methods")}
    )
    for section in (*FILLED, "slurm"):
        given = _mapping(doc.get(section), section)
        _known(SECTIONS[section] or {}, given, f"{section}.", "unknown setting")
        if section in FILLED:
            full[section] = {k: given.get(k, d) for k, d in (SECTIONS[section] or {}).items()}
        elif given:
            full[section] = dict(given)
    methods = doc.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise MethodError("methods: expected a mapping of method name -> {kind: ...}")
    full["methods"] = {str(k): resolve_method(str(k), v) for k, v in methods.items()}
    if full["scoring"]["baseline"] is None:
        full["scoring"]["baseline"] = next(iter(full["methods"]))
    return full


def check_key(doc: dict, parts: list[str]) -> str | None:
    """Why `--set <parts>=v` names no setting of playbook `doc` (None: it does). Spec sections
    are checked against their settings, `methods.<name>.<key>` against the method's kind, free
    sections (a `command` playbook's `job`) against the keys the file holds."""
    head = parts[0]
    if parts in (["name"], ["description"]):  # set even where the playbook leaves them out
        return None
    if head not in SECTIONS and head not in doc:
        return _no_key(parts, 1, SECTIONS)
    table, depth = SECTIONS.get(head), 1  # parts[depth] must be in table, and be the last
    if head == "methods" and len(parts) > 1:
        methods = doc.get("methods") if isinstance(doc.get("methods"), dict) else {}
        if parts[1] not in methods:  # a whole new method is added: methods.NEW={kind: beam}
            return None if len(parts) == 2 else _no_key(parts, 2, methods)
        body = methods[parts[1]] if isinstance(methods[parts[1]], dict) else {}
        kind = body.get("kind") or ("tesseract" if body.get("backend") == "tesseract" else "")
        table = {"kind": 0, "backend": 0, **KINDS.get(str(kind), {}), "postprocess": 0}
        table, depth = {**table, "postprocess_text": 0}, 2
    if isinstance(table, dict):
        if len(parts) > depth and parts[depth] not in table:
            return _no_key(parts, depth + 1, table)
        return _no_key(parts, depth + 2, {}) if len(parts) > depth + 1 else None
    node: object = doc
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return _no_key(parts, i + 1, node if isinstance(node, dict) else {})
        node = node[part]
    return None


def _no_key(parts: list[str], depth: int, choices: object) -> str:
    return f"no key '{'.'.join(parts[:depth])}'{did_you_mean(parts[depth - 1], choices)}"


def check_template(prompt: object, prompt_format: object) -> None:
    """Raise PlaybookError when `prompt` cannot be used with `prompt_format` (`checks.py`)."""
    problem = template_problem(prompt, prompt_format)
    if problem:
        raise PlaybookError(problem)


def parse_playbook(doc: object, name: str = "playbook") -> RunSpec:
    """Resolve and validate a playbook into a RunSpec (errors name the field)."""
    full = resolve(doc, name)
    model, data, gen, scoring = (full[s] for s in FILLED)
    if data["source"] is None:
        raise PlaybookError("data.source: missing (a labels.jsonl folder, datasets folder or name)")
    methods = parse_methods(full["methods"])
    if any(m.needs_model for m in methods) and not (model["base"] or model["tiny"]):
        raise PlaybookError("model.base: missing (a hub name or a local folder)")
    for where, value, low in (
        ("generation.batch_size", gen["batch_size"], 1),
        ("generation.max_new_tokens", gen["max_new_tokens"], 1),
        ("data.seed", data["seed"], 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PlaybookError(f"{where}: expected a positive integer, got {value!r}")
    n = data["n_samples"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise PlaybookError(f"data.n_samples: expected a positive integer or null, got {n!r}")
    scored = [m.name for m in scored_methods(methods)]  # derived methods too (postprocess.py)
    for problem in (
        shard_problem(data),
        scoring_problem(scoring, scored),
        text_problem(methods, data["holdout"]),
    ):
        if problem:
            raise PlaybookError(problem)
    problem = settings_problem(data, scoring)  # data.script, data.holdout, the gates' settings
    if problem:
        raise PlaybookError(problem)
    problem = generation_problem(gen)
    if problem:
        raise PlaybookError(problem)
    check_template(model["prompt"], model["prompt_format"])
    canonical = json.dumps(full, sort_keys=True, ensure_ascii=False, default=str)
    return RunSpec(
        name=full["name"],
        digest=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        model=model,
        data=DataSpec(**data),
        methods=methods,
        batch_size=gen["batch_size"],
        max_new_tokens=gen["max_new_tokens"],
        normalize=scoring["normalize"],
        collapse_whitespace=bool(scoring["collapse_whitespace"]),
        cer_tolerance=float(scoring["cer_tolerance"]),
        compile=gen["compile"],
        lora=gen["lora"],
        bootstrap=scoring["bootstrap"],
        baseline=str(scoring["baseline"]),
        doc=full,
        preflight=scoring["preflight"] == "on",
        fail_on_noop=scoring["fail_on_noop"],
        group_by=scoring["group_by"],
    )
