"""Run a playbook's methods over the same sampled images; write progress, predictions, results.

Files in the output folder (every file the orchestrator reads is written to a temp name and
renamed; predictions are appended and flushed per batch):
- `predictions.jsonl`: one line per (image, method): index, method, reference, prediction,
  cer, seconds, and `error` for an image that failed (it counts in `failures`, never a crash).
- `progress.json`: done/total over all (image, method) pairs, method, images/s, ETA, updated_at;
  rewritten at most every 2 s.
- `results.json`: per method the scores of `metrics.py`, timing around generation only, and the
  settings; `time_per_image_s`/`images_per_s` are steady state (the method's first batch, its
  warm-up, is left out when more follow), `warmup_s` and `wall_s` (the whole method) beside them;
  `run` holds provenance and the recommendation. Validated by `schema.py`.
`resume=True` keeps every (index, method) already in predictions.jsonl and decodes the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import eta, metrics, schema, stats, summary
from .batches import run_method, timing_fields
from .data import DataSpec, Samples, sample_indices, selection_hash, shard_indices
from .decoding import Method, MethodError, parse_methods
from .fastpath import shapes
from .schema import did_you_mean

SECTIONS = {
    "name": None,
    "description": None,
    "command": None,
    "model": {"base", "checkpoints", "tiny", "prompt", "device", "dtype"},
    "data": {
        "source",
        "split",
        "n_samples",
        "seed",
        "image_column",
        "text_column",
        "shard",
        "num_shards",
    },
    "generation": {"batch_size", "max_new_tokens", "compile", "lora"},
    "scoring": {"normalize", "collapse_whitespace", "cer_tolerance", "bootstrap", "baseline"},
    "methods": None,
    # sbatch resources for `backend: slurm` hosts, read by orchestrator/backends/slurm.py
    "slurm": {"partition", "account", "time", "mem", "gres", "gpus", "cpus_per_task"},
}
PROGRESS_EVERY_S = 2.0
LORA_PATHS = ("fast", "peft")


class PlaybookError(ValueError):
    """The playbook is invalid for the worker; the message names the field."""


@dataclass(frozen=True)
class RunSpec:
    """A playbook as the worker uses it."""

    name: str
    digest: str
    model: dict
    data: DataSpec
    methods: list[Method]
    batch_size: int = 8
    max_new_tokens: int = 128
    normalize: str = "nfc"
    collapse_whitespace: bool = True
    cer_tolerance: float = 0.01
    compile: str = "auto"
    lora: str = "fast"
    bootstrap: int = stats.DEFAULT_RESAMPLES
    baseline: str = ""

    @property
    def baseline_method(self) -> str:
        """`scoring.baseline`, else the first method."""
        return self.baseline or self.methods[0].name


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise PlaybookError(f"{name}: expected a mapping")
    unknown = set(value) - SECTIONS[name]
    if unknown:
        key = sorted(unknown)[0]
        raise PlaybookError(f"{name}.{key}: unknown setting{did_you_mean(key, SECTIONS[name])}")
    return value


def parse_playbook(doc: object, name: str = "playbook") -> RunSpec:
    """Validate a playbook mapping into a RunSpec (errors name the field)."""
    if not isinstance(doc, dict):
        raise PlaybookError("expected a mapping at the top level")
    unknown = set(doc) - set(SECTIONS) - {"job"}
    if unknown:
        key = sorted(unknown)[0]
        raise PlaybookError(f"{key}: unknown section{did_you_mean(key, SECTIONS)}")
    model, data = _section(doc, "model"), _section(doc, "data")
    gen, scoring = _section(doc, "generation"), _section(doc, "scoring")
    _section(doc, "slurm")
    if "source" not in data:
        raise PlaybookError("data.source: missing (a labels.jsonl folder, datasets folder or name)")
    try:
        methods = parse_methods(doc.get("methods"))
    except MethodError as exc:
        raise PlaybookError(str(exc)) from None
    if any(m.needs_model for m in methods) and not (model.get("base") or model.get("tiny")):
        raise PlaybookError("model.base: missing (a hub name or a local folder)")
    for where, section, key in (
        ("generation", gen, "batch_size"),
        ("generation", gen, "max_new_tokens"),
        ("data", data, "seed"),
    ):
        value = section.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 - (key == "seed"):
            raise PlaybookError(f"{where}.{key}: expected a positive integer, got {value!r}")
    n = data.get("n_samples")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise PlaybookError(f"data.n_samples: expected a positive integer or null, got {n!r}")
    _check_shard(data)
    tol = scoring.get("cer_tolerance", 0.01)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
        raise PlaybookError(f"scoring.cer_tolerance: expected a number >= 0, got {tol!r}")
    form = scoring.get("normalize", "nfc")
    if form not in metrics.NORMAL_FORMS:
        raise PlaybookError(
            f"scoring.normalize: expected one of {', '.join(metrics.NORMAL_FORMS)}, got {form!r}"
        )
    compile_setting, lora = _generation_switches(gen)
    resamples, baseline = _scoring_stats(scoring, methods)
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return RunSpec(
        name=str(doc.get("name") or name),
        digest=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        model=model,
        data=DataSpec(**data),
        methods=methods,
        batch_size=gen.get("batch_size", 8),
        max_new_tokens=gen.get("max_new_tokens", 128),
        normalize=form,
        collapse_whitespace=bool(scoring.get("collapse_whitespace", True)),
        cer_tolerance=float(tol),
        compile=compile_setting,
        lora=lora,
        bootstrap=resamples,
        baseline=baseline,
    )


def _scoring_stats(scoring: dict, methods: list[Method]) -> tuple[int, str]:
    """`scoring.bootstrap` (resamples, >= 100) and `scoring.baseline` (a method name)."""
    resamples = scoring.get("bootstrap", stats.DEFAULT_RESAMPLES)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise PlaybookError(
            f"scoring.bootstrap: expected an integer >= 100 (resamples), got {resamples!r}"
        )
    baseline = scoring.get("baseline") or ""
    names = [m.name for m in methods]
    if baseline and baseline not in names:
        raise PlaybookError(
            f"scoring.baseline: '{baseline}' is not a method{did_you_mean(baseline, names)}; "
            f"methods: {', '.join(names)}"
        )
    return resamples, str(baseline)


def _generation_switches(gen: dict) -> tuple[str, str]:
    """`generation.compile` (auto|on|off; YAML's bare on/off arrive as booleans) and `.lora`."""
    value = gen.get("compile", "auto")
    value = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    if value not in shapes.COMPILE_SETTINGS:
        raise PlaybookError(
            f"generation.compile: expected one of {', '.join(shapes.COMPILE_SETTINGS)}, "
            f"got {value!r}"
        )
    lora = gen.get("lora", "fast")
    if lora not in LORA_PATHS:
        raise PlaybookError(
            f"generation.lora: expected one of {', '.join(LORA_PATHS)}, got {lora!r}"
        )
    return value, lora


def _check_shard(data: dict) -> None:
    """`data.num_shards` >= 1 and 0 <= `data.shard` < num_shards (integers)."""
    count, shard = data.get("num_shards", 1), data.get("shard", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PlaybookError(f"data.num_shards: expected a positive integer, got {count!r}")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < count:
        raise PlaybookError(f"data.shard: expected an integer from 0 to {count - 1}, got {shard!r}")


def _shard_of(data: DataSpec) -> dict:
    """Provenance of a shard: which one of how many (absent from unsharded runs)."""
    return {"shard": data.shard, "num_shards": data.num_shards}


def load_playbook(path: str | Path) -> RunSpec:
    """Read and validate a playbook file (`yaml.safe_load` only)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PlaybookError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    try:
        return parse_playbook(doc, path.stem)
    except PlaybookError as exc:
        raise PlaybookError(f"{path.name}: {exc}") from None


def write_json_atomic(path: Path, doc: dict) -> None:
    """Write JSON to a temp name in the same folder, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_predictions(path: Path) -> list[dict]:
    """The lines of predictions.jsonl; a torn last line (killed mid-write) is dropped."""
    if not path.exists():
        return []
    lines, good = path.read_text(encoding="utf-8").splitlines(keepends=True), []
    for i, line in enumerate(lines):
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: corrupt line") from None
            path.write_text("".join(lines[:i]), encoding="utf-8")
    return good


@dataclass
class Progress:
    """progress.json, rewritten at most every PROGRESS_EVERY_S seconds; the ETA prices each
    method's remaining images separately (`eta.Tracker`)."""

    path: Path
    total: int
    done: int = 0
    method: str = ""
    rate: float = 0.0
    last_write: float = field(default=0.0)
    tracker: eta.Tracker = field(default_factory=lambda: eta.Tracker({}))

    def update(self, done: int, method: str, rate: float, force: bool = False) -> None:
        """Record progress; write the file when due (or `force`)."""
        self.done, self.method, self.rate = done, method, rate
        now = time.monotonic()
        if force or now - self.last_write >= PROGRESS_EVERY_S:
            estimate = self.tracker.estimate()
            doc = {
                "done": self.done,
                "total": self.total,
                "method": self.method,
                "images_per_s": round(self.rate, 4),
                "eta_s": None if estimate.seconds is None else round(estimate.seconds, 1),
                "eta_approximate": estimate.approximate,
                "updated_at": time.time(),
            }
            write_json_atomic(self.path, schema.validate_progress(doc))
            self.last_write = now


def model_paths(spec: RunSpec, root: str) -> tuple[str, list[str]]:
    """The base model and checkpoint folders; a `tiny` model is built first when missing."""
    from .engine import expand_checkpoints

    tiny = spec.model.get("tiny")
    if tiny:
        folder = Path(os.path.expanduser(str(tiny)))
        folder = folder if folder.is_absolute() else Path(root) / folder
        if not (folder / "checkpoints").is_dir():
            from . import tiny as tiny_mod

            tiny_mod.build(folder)
        return str(folder / "base"), expand_checkpoints(str(folder / "checkpoints"))
    base = str(spec.model["base"])
    local = os.path.expanduser(base)
    if base.startswith((".", "/", "~")):
        base = local if os.path.isabs(local) else os.path.join(root, local)
    return base, expand_checkpoints(spec.model.get("checkpoints"), root)


def _load_engine(spec: RunSpec, root: str, n_images: int, log: Callable[[str], None]):
    """The loaded engine (None when no method needs a model), its base and checkpoints.

    Static-cache compiled decoding is switched on here when `generation.compile` asks for it
    (`auto`: CUDA and a run big enough to pay the compile back); its cache lives under `root`.
    """
    if not any(m.needs_model for m in spec.methods):
        return None, None, []
    from . import engine as engine_mod

    base, checkpoints = model_paths(spec, root)
    log(f"loading {base} with {len(checkpoints)} checkpoint(s)")
    engine = engine_mod.load(
        base,
        checkpoints,
        device=str(spec.model.get("device", "auto")),
        prompt=str(spec.model.get("prompt") or engine_mod.DEFAULT_PROMPT),
        dtype=str(spec.model.get("dtype", "auto")),
        lora=spec.lora,
    )
    rows = n_images * sum(m.needs_model for m in spec.methods)
    if shapes.want_compile(spec.compile, engine.device, rows):
        if engine.mode != "fast":
            log("generation.compile: needs the fast LoRA path; decoding eagerly with peft")
        else:
            cache = shapes.compile_cache(root)
            log(f"static cache + torch.compile, buckets {shapes.buckets(spec.batch_size)}, {cache}")
            engine.use_static(compiled=True, batch_size=spec.batch_size)
    return engine, base, checkpoints


def run(
    playbook: str | Path,
    out: str | Path,
    resume: bool = False,
    root: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every method of `playbook` over its samples; return the results object."""
    spec = load_playbook(playbook)
    root = root or os.getcwd()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / "predictions.jsonl"
    if pred_path.exists() and pred_path.stat().st_size and not resume:
        raise PlaybookError(f"{pred_path} exists: pass --resume to continue it, or a new --out")
    started = time.time()
    samples = Samples(spec.data, root)
    indices = sample_indices(len(samples), spec.data.n_samples, spec.data.seed)
    indices = shard_indices(indices, spec.data.shard, spec.data.num_shards)
    lines = read_predictions(pred_path) if resume else []
    done = {(line["index"], line["method"]) for line in lines}
    progress = Progress(out / "progress.json", total=len(indices) * len(spec.methods))
    progress.tracker.left = {
        m.name: sum((i, m.name) not in done for i in indices) for m in spec.methods
    }
    progress.update(len(done), spec.methods[0].name, 0.0, force=True)

    for method in spec.methods:
        if not method.needs_model:
            from .tesseract import check

            check(method.binary, method.lang)
    engine, base, checkpoints = _load_engine(spec, root, len(indices), log)
    progress.tracker.costs = {m.name: eta.relative_cost(m, len(checkpoints)) for m in spec.methods}

    timings: dict[str, dict] = {}
    with open(pred_path, "a", encoding="utf-8") as sink:
        for method in spec.methods:
            pending = [i for i in indices if (i, method.name) not in done]
            log(f"{method.name}: {len(pending)} image(s) to decode, {method.settings()}")

            def record(new: list[dict], rate: float, name: str = method.name) -> None:
                for line in new:
                    sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                    done.add((line["index"], name))
                sink.flush()
                os.fsync(sink.fileno())
                lines.extend(new)
                progress.tracker.record(name, len(new), sum(line["seconds"] for line in new))
                progress.update(len(done), name, rate)

            timings[method.name] = run_method(engine, method, spec, samples, pending, record)
    progress.update(len(done), spec.methods[-1].name, progress.rate, force=True)

    results = summary.summarize(
        spec.methods,
        lines,
        spec.normalize,
        spec.collapse_whitespace,
        spec.baseline_method,
        spec.bootstrap,
    )
    for name, timing in timings.items():
        results[name].update(timing_fields(timing))
    results["run"] = {
        "run_id": os.environ.get("ORCH_RUN_ID") or out.name,
        "playbook": spec.name,
        "playbook_sha256": spec.digest,
        "host": socket.gethostname(),
        "device": engine.device if engine else "cpu",
        "gpu": _gpu_name(engine),
        "versions": _versions(engine),
        "code": _code_identity(root),
        "model": {"base": base, "checkpoints": checkpoints},
        "data": {
            "source": spec.data.source,
            "split": spec.data.split,
            "n_samples": len(indices),
            "seed": spec.data.seed,
            "indices_sha256": selection_hash(spec.data, indices),
            **(_shard_of(spec.data) if spec.data.num_shards > 1 else {}),
        },
        "batch_size": spec.batch_size,
        "max_new_tokens": spec.max_new_tokens,
        "lora": engine.mode if engine else None,
        "compiled": bool(engine and engine.compiled),
        "normalize": spec.normalize,
        "baseline": spec.baseline_method,
        "bootstrap": {"resamples": spec.bootstrap, "seed": stats.DEFAULT_SEED, "confidence": 0.95},
        "recommendation": summary.recommend(results, spec.cer_tolerance, spec.baseline_method),
        "started_at": started,
        "ended_at": time.time(),
    }
    write_json_atomic(out / "results.json", schema.validate_results(results))
    return results


def _gpu_name(engine) -> str | None:
    if engine is None:
        return None
    from .engine import gpu_name

    return gpu_name()


def _versions(engine) -> dict:
    if engine is None:
        return {}
    from .engine import versions

    return versions()


def _code_identity(root: str) -> dict | None:
    """The pushed tree's identity (commit, dirty flag, content hash) written by `orch push`.

    A tree that `orch push` did not send has none (a note in the log says so); one whose file
    cannot be read or is not a JSON object is named in a warning in the log, never dropped
    silently. Either way results.json's `run.code` is null.
    """
    import sys

    path = Path(root) / ".orch-identity.json"
    if not path.exists():
        print(
            f"note: no {path}: results.json has no code identity (not sent by orch push)",
            file=sys.stderr,
            flush=True,
        )
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        print(
            f"warning: {path} is unreadable ({exc}): results.json has no code identity",
            file=sys.stderr,
            flush=True,
        )
        return None
    return doc
