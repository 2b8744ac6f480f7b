"""Run a playbook's methods over the same sampled images; write progress, predictions, results.

Files in the output folder (see `outputs.py`; every file the orchestrator reads is written to a
temp name and renamed; predictions are appended and flushed per batch):
- `predictions.jsonl`: one line per (image, method): index, method, reference, prediction,
  cer, char_edits, chars, seconds, and `error` for an image that failed (it counts in
  `failures`, never a crash).
- `progress.json`: done/total over all (image, method) pairs, method, images/s, ETA, updated_at;
  rewritten at most every 2 s. The log gets one `contract.schema.progress_line` per batch
  (method, its done/total, images/s).
- `results.json`: per method the scores of `metrics.py`, timing around generation only, and the
  settings; `time_per_image_s`/`images_per_s` are steady state (the method's first batch, its
  warm-up, is left out when more follow), `warmup_s` and `wall_s` (the whole method) beside them;
  `run` holds provenance and the recommendation (`provenance.py`). Validated by `schema.py`.
Derived methods (`postprocess:` on a method, `derived.py`) get their lines after decoding, from
their source's, and their stages' counts in results.json (`postprocess`).
`resume=True` keeps every (index, method) already in predictions.jsonl and decodes the rest.
Gates (`preflight.py`, unless `scoring.preflight: off`): no-op and identical checkpoints after
loading (warnings in the log and `run.preflight`), and each method's first batch before the
rest (a `PreflightError` stops the run: the batch is not written and results.json is not).
A failed image is named in the log (index and file or id, and the error).
The playbook is read with `spec.parse_playbook`, the same function `orch run` validated it with.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from . import derived, summary
from .batches import run_method, timing_fields
from .checkpoints import ModelPaths, locate, tiny_folder
from .contract import schema
from .contract.fsio import read_jsonl, write_json_atomic
from .contract.spec import PlaybookError, RunSpec, parse_playbook
from .data import DataError, Samples, selected_indices
from .fastpath import shapes
from .methods import kind_of
from .outputs import Progress, append_lines, hold_run_lock
from .preflight import check_adapters, check_first_batch
from .provenance import run_block


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


def model_folders(spec: RunSpec, root: str) -> ModelPaths:
    """The base model and checkpoint folders; a `tiny` model is built first when missing."""
    tiny = tiny_folder(spec.model, root)
    if tiny is not None and not (tiny / "checkpoints").is_dir():
        from . import tiny as tiny_mod

        tiny_mod.build(tiny)
    return locate(spec.model, root)


def _load_engine(spec: RunSpec, root: str, log: Callable[[str], None]):
    """The loaded engine (None when no method needs a model), its base and checkpoints.

    Whether a method decodes with static cache + torch.compile is decided per method
    (`_compile_for`).
    """
    if not any(m.needs_model for m in spec.methods):
        return None, None, []
    from . import engine as engine_mod

    base, checkpoints = (paths := model_folders(spec, root)).base, paths.checkpoints
    log(f"loading {base} with {len(checkpoints)} checkpoint(s)")
    engine = engine_mod.load(
        base,
        checkpoints,
        device=str(spec.model["device"]),
        prompt=str(spec.model.get("prompt") or engine_mod.DEFAULT_PROMPT),
        dtype=str(spec.model["dtype"]),
        lora=spec.lora,
        prompt_format=str(spec.model["prompt_format"]),
    )
    for note in engine.notes:
        log(note)
    return engine, base, checkpoints


def _compile_for(spec: RunSpec, engine, method, pending: int, root: str, log):
    """Switch static cache + torch.compile on or off for `method` (`generation.compile`; `auto`:
    CUDA and enough rows to pay the compile back, `shapes.want_compile`). Returns where its
    compile cost is to be recorded (None: eager)."""
    if engine is None or not method.needs_model:
        return None
    engine.static = engine.compiled = False
    if spec.compile == "off" or (spec.compile == "auto" and not engine.device.startswith("cuda")):
        return None
    cache = shapes.compile_cache(root)
    costs = shapes.CompileCosts(cache, shapes.model_shape(engine.model, engine.device))
    rows = pending * kind_of(method).relative_cost(len(engine.adapters))
    cost = costs.get(method.kind)
    if not shapes.want_compile(spec.compile, engine.device, rows, method.kind, cost):
        need = shapes.min_rows(method.kind, cost)
        log(f"{method.name}: eager ({rows:.0f} rows; compiling pays from {need} rows)")
        return None
    if engine.mode != "fast":
        log("generation.compile: needs the fast LoRA path; decoding eagerly with peft")
        return None
    log(f"{method.name}: static cache + torch.compile, buckets {shapes.buckets(spec.batch_size)},"
        f" {cache}")  # fmt: skip
    engine.use_static(compiled=True, batch_size=spec.batch_size)
    return costs


def _record_compile(costs, method, timing: dict) -> None:
    """The compile seconds of a compiled method: its first batch less a steady one."""
    if costs is not None and timing["batches"] > 1 and timing["steady_s"] > 0:
        steady = timing["steady_s"] / (timing["batches"] - 1)
        costs.put(method.kind, timing["warmup_s"] - steady)


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
    hold_run_lock(out)  # one worker per run folder, for as long as it lives
    pred_path = out / "predictions.jsonl"
    if pred_path.exists() and pred_path.stat().st_size and not resume:
        raise PlaybookError(f"{pred_path} exists: pass --resume to continue it, or a new --out")
    started = time.time()
    samples = Samples(spec.data, root)
    if spec.group_by and spec.group_by not in samples.columns():
        raise DataError(
            f"scoring.group_by: column '{spec.group_by}' not in {spec.data.source} "
            f"(columns: {', '.join(samples.columns())})"
        )
    indices = selected_indices(len(samples), spec.data)
    lines = read_jsonl(pred_path, repair_tail=True) if resume else []
    decoded = {m.name for m in spec.methods}  # derived methods' lines are made afterwards
    done = {(line["index"], line["method"]) for line in lines if line["method"] in decoded}
    progress = Progress(out / "progress.json", total=len(indices) * len(spec.methods))
    progress.tracker.left = {
        m.name: sum((i, m.name) not in done for i in indices) for m in spec.methods
    }
    progress.update(len(done), spec.methods[0].name, 0.0, force=True)
    for method in spec.methods:  # what each needs on this host (Tesseract and its data)
        kind_of(method).check()
    engine, base, checkpoints = _load_engine(spec, root, log)
    gates = _check_adapters(spec, engine, log)
    progress.tracker.costs = {
        m.name: kind_of(m).relative_cost(len(checkpoints)) for m in spec.methods
    }
    using = (engine, samples, root)
    timings = _decode(spec, using, indices, (lines, done), pred_path, progress, log)
    with open(pred_path, "a", encoding="utf-8") as sink:  # derived methods (postprocess:)

        def keep(new: list[dict]) -> None:
            append_lines(sink, new)
            lines.extend(new)

        post = derived.apply_all(spec, samples, root, lines, keep, log)

    results = summary.summarize_run(spec, lines)
    for name, timing in timings.items():
        results[name].update(timing_fields(timing))
    for method in spec.methods:  # null for a method that runs no model (same keys for all)
        results[method.name]["lora_path"] = progress.paths.get(method.name)
        for d in method.postprocess:  # decoded as its source was
            results[d.name].update(
                lora_path=progress.paths.get(method.name), postprocess=post[d.name]
            )
    model = (base, checkpoints)
    results["run"] = run_block(spec, results, engine, model, indices, started, (root, out), log)
    results["run"]["preflight"] = gates
    if spec.data.holdout or spec.group_by:
        results["run"]["data"].update(holdout=spec.data.holdout, group_by=spec.group_by)
    results["run"]["data"]["revision"] = samples.revision
    write_json_atomic(out / "results.json", schema.validate_results(results))
    return results


def _check_adapters(spec: RunSpec, engine, log: Callable[[str], None]) -> dict:
    """`run.preflight`: the adapters' relative deltas and the warnings (logged here)."""
    if not spec.preflight:
        return {"enabled": False}
    report = {"adapters": {}, "identical": []}
    if engine is not None and engine.adapters:
        from .fastpath.deltas import adapter_report

        report = adapter_report(engine)
    warnings = check_adapters(report, spec.fail_on_noop)
    for line in warnings:
        log(line)
    return {"enabled": True, **report, "warnings": warnings}


def _decode(
    spec: RunSpec,
    using: tuple,
    indices: list[int],
    state: tuple[list[dict], set],
    pred_path: Path,
    progress: Progress,
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Decode, method by method, the (index, method) pairs not `done` with `using` (engine,
    samples, root); append the new lines to `lines` and the predictions file; return the
    timings."""
    (engine, samples, root), (lines, done) = using, state
    timings: dict[str, dict] = {}
    with open(pred_path, "a", encoding="utf-8") as sink:
        for method in spec.methods:
            pending = [i for i in indices if (i, method.name) not in done]
            path = progress.paths[method.name] = kind_of(method).lora_path(engine)
            via = f", LoRA path: {path}" if path else ""
            log(f"{method.name}: {len(pending)} image(s) to decode, {method.settings()}{via}")
            gate = [spec.preflight and len(pending) == len(indices)]  # resumed: checked before
            mine = [len(indices) - len(pending)]  # this method's lines done (resumed: before)

            def record(
                new: list[dict], rate: float, name: str = method.name, gate=gate, mine=mine
            ) -> None:
                _annotate(spec, samples, new, log)
                if gate[0] and any("error" not in line for line in new):  # a decoded batch
                    check_first_batch(name, new, spec.data.script)
                    gate[0] = False
                append_lines(sink, new)
                done.update((line["index"], name) for line in new)
                lines.extend(new)
                progress.tracker.record(name, len(new), sum(line["seconds"] for line in new))
                progress.update(len(done), name, rate)
                mine[0] += len(new)  # one line per batch: the log is never silent for minutes
                word = "_".join(name.split())  # a progress line's values are single words
                log(schema.progress_line(mine[0], len(indices), method=word, images_per_s=rate))

            costs = _compile_for(spec, engine, method, len(pending), root, log)
            timings[method.name] = run_method(engine, method, spec, samples, pending, record)
            _record_compile(costs, method, timings[method.name])
    progress.update(len(done), spec.methods[-1].name, progress.rate, force=True)
    return timings


def _annotate(spec: RunSpec, samples: Samples, new: list[dict], log: Callable[[str], None]):
    """Give each line its `group` (scoring.group_by) and log every failed image by name."""
    for line in new:
        if spec.group_by:
            line["group"] = samples.value(line["index"], spec.group_by)
        if "error" in line:
            where = samples.describe(line["index"])
            log(f"{line['method']}: image {where} failed: {line['error']}")
