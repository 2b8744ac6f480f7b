"""Derived methods on the worker: a method's predictions through its post-correction stages.

After decoding, every derived method (`contract/postprocess.py`: `<method>+<suffix>`) gets one
predictions line per line of its source: the source's prediction (and n-best, when kept) through
the stages of `gpu_worker/postcorrect`, scored against the same reference; `seconds` is the
source's decode time plus the stages' time on that line. A failed source line stays a failed
line. No GPU is used. The stages are run over every source line each time (they are
deterministic), so their `counts()` cover the whole run even after a resume; only the lines not
yet in predictions.jsonl are appended.

Training text (stages in `TEXT_STAGES`): the method's `postprocess_text` file, one text per
line, or `data.holdout`'s train part; a text file holding a line that is scored here is refused
(the stages must never learn from the lines being scored).
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from pathlib import Path

from . import metrics, postcorrect
from .contract.postprocess import Derived, scored_methods
from .contract.spec import PlaybookError, RunSpec
from .data import Samples, holdout_split, resolve_path


def load_stages() -> dict[str, type]:
    """Every stage module of `gpu_worker/postcorrect` imported (they register themselves)."""
    for info in pkgutil.iter_modules(postcorrect.__path__):
        importlib.import_module(f"{postcorrect.__name__}.{info.name}")
    return postcorrect.STAGES


def derived_methods(spec: RunSpec) -> list[Derived]:
    """The run's derived methods, in scoring order."""
    return [m for m in scored_methods(spec.methods) if isinstance(m, Derived)]


def training_text(derived: Derived, spec: RunSpec, samples: Samples, root: str) -> list[str]:
    """The text `derived`'s stages learn from (empty when none of them needs any)."""
    if not derived.needs_text:
        return []
    if derived.text is not None:
        path = Path(resolve_path(derived.text, root))
        where = f"methods.{derived.source}.postprocess_text: {derived.text}"
        try:
            texts = [t.strip() for t in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeError) as exc:
            raise PlaybookError(f"{where}: cannot read ({exc.__class__.__name__})") from None
        return [t for t in texts if t]
    train = holdout_split(len(samples), spec.data.holdout)[0]
    return [samples.text(i) for i in train]


def _refuse_scored(derived: Derived, texts: list[str], references: set[str]) -> None:
    if derived.text is None:
        return  # the holdout's train rows are apart from its test rows by construction
    seen = sorted(set(texts) & references)
    if seen:
        raise PlaybookError(
            f"methods.{derived.source}.postprocess_text: {derived.text} holds {len(seen)} "
            f"line(s) that this run scores (e.g. {seen[0][:40]!r}); remove them"
        )


def _line(derived: Derived, source: dict, pipeline, spec: RunSpec) -> dict:
    """The derived method's predictions line for one source line."""
    if "error" in source or source.get("prediction") is None:
        return {**source, "method": derived.name}
    nbest = [(str(t), float(s)) for t, s in source["nbest"]] if "nbest" in source else None
    t0 = time.perf_counter()
    text = pipeline.apply(source["prediction"], nbest)
    spent = time.perf_counter() - t0
    score = metrics.score_pair(source["reference"], text, spec.normalize, spec.collapse_whitespace)
    line = {
        "index": source["index"],
        "method": derived.name,
        "reference": source["reference"],
        "prediction": text,
        "cer": score.cer,
        "char_edits": score.char_edits,
        "chars": score.chars,
        "seconds": source["seconds"] + spent,
    }
    if "group" in source:
        line["group"] = source["group"]
    return line


def apply_all(
    spec: RunSpec,
    samples: Samples,
    root: str,
    lines: list[dict],
    record: Callable[[list[dict]], None],
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Run every derived method over its source's lines; `record(new)` stores the lines not in
    `lines` yet. Returns per derived method its results.json `postprocess` block."""
    todo = derived_methods(spec)
    if not todo:
        return {}
    stages = load_stages()
    references = {x["reference"] for x in lines if x.get("reference")}
    out: dict[str, dict] = {}
    for derived in todo:
        missing = [s["stage"] for s in derived.stages if s["stage"] not in stages]
        if missing:
            raise PlaybookError(
                f"methods.{derived.source}.postprocess: stage {missing[0]} is not installed on "
                "this worker (gpu_worker/postcorrect)"
            )
        texts = training_text(derived, spec, samples, root)
        _refuse_scored(derived, texts, references)
        pipeline = postcorrect.build(derived.pipe(), texts)
        source = {x["index"]: x for x in lines if x["method"] == derived.source}
        done = {x["index"] for x in lines if x["method"] == derived.name}
        new = [_line(derived, source[i], pipeline, spec) for i in sorted(source)]
        changed = sum(1 for x in new if x.get("prediction") != source[x["index"]].get("prediction"))
        record([x for x in new if x["index"] not in done])
        log(f"{derived.name}: {len(new)} line(s) post-corrected, {changed} changed")
        out[derived.name] = {
            "stages": pipeline.counts(),
            "train_lines": len(texts),
            "changed": changed,
        }
    return out
