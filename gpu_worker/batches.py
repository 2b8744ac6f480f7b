"""One method over its images: width-sorted batches, prefetched, decoded, timed, scored.

`run_method` decodes a method's pending indices in batches of similar image width while a
background thread loads the next batch (images and processor); the first batch is the warm-up
and stays out of the steady-state figures when more follow. A corrupt image, or an image whose
decode fails alone, becomes an error line (a counted failure), never a crash. Each line carries
its `char_edits` and `chars` (normalised reference length; a failed line: all of them deleted),
so runs can be compared line by line (`orch compare`) without scoring again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import metrics
from .contract.spec import Method, MethodError
from .data import Loaded, Samples, prefetched
from .methods import kind_of

if TYPE_CHECKING:
    from .contract.spec import RunSpec


def _decode_timed(engine, method: Method, images: list, spec: RunSpec, first: int):
    """Per image the decoded fields (`prediction`, maybe `nbest`) and the seconds spent
    generating them (GPU synchronised)."""
    if engine is not None:
        engine.synchronize()
    t0 = time.perf_counter()
    texts = kind_of(method).lines(engine, images, first, spec.max_new_tokens)
    if engine is not None:
        engine.synchronize()
    return texts, time.perf_counter() - t0


def run_method(engine, method: Method, spec: RunSpec, samples: Samples, pending, record) -> dict:
    """Decode `pending` in batches of similar width, the next batch loading meanwhile.

    `record(lines, rate)` stores each batch's lines. Returns the timing: the first batch is the
    warm-up (compile, autotune, caches) and stays out of the steady figures when more follow.
    """
    started = time.perf_counter()
    order = kind_of(method).order(samples, pending)
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    prepare = engine.prefetch if engine is not None and method.needs_model else None
    timing = {"batches": len(batches), "warmup_s": 0.0, "steady_s": 0.0, "steady_images": 0}
    spent, decoded = 0.0, 0
    for number, loaded in enumerate(prefetched(samples, batches, prepare)):
        new, seconds = _run_batch(engine, method, spec, samples, loaded)
        good = sum("error" not in line for line in new)
        if number == 0:
            timing["warmup_s"] = seconds
        if number > 0 or len(batches) == 1:
            timing["steady_s"] += seconds
            timing["steady_images"] += good
        spent, decoded = spent + seconds, decoded + len(new)
        record(new, decoded / spent if spent else 0.0)
    timing["wall_s"] = time.perf_counter() - started
    return timing


def timing_fields(timing: dict) -> dict:
    """results.json fields of one method's timing in this run (steady state apart)."""
    out = {"warmup_s": timing["warmup_s"], "wall_s": timing["wall_s"]}
    if timing["steady_images"] and timing["steady_s"] > 0:
        out["time_per_image_s"] = timing["steady_s"] / timing["steady_images"]
        out["images_per_s"] = timing["steady_images"] / timing["steady_s"]
    return out


def _run_batch(engine, method: Method, spec: RunSpec, samples: Samples, loaded: Loaded):
    """Decode one loaded batch: its lines (failures too) and the seconds spent decoding."""
    lines = [_failure(samples, method, index, exc, spec) for index, exc in loaded.failures]
    ok, images = loaded.indices, loaded.images
    if not ok:
        return lines, 0.0
    try:
        texts, seconds = _decode_timed(engine, method, images, spec, ok[0])
        results = [(i, text, seconds / len(ok)) for i, text in zip(ok, texts, strict=True)]
    except MethodError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate the image that breaks the batch
        results, seconds = [], 0.0
        for index, image in zip(ok, images, strict=True):
            try:
                if len(ok) == 1:
                    raise exc
                texts, one_s = _decode_timed(engine, method, [image], spec, index)
                results.append((index, texts[0], one_s))  # fields, as above
                seconds += one_s
            except MethodError:
                raise
            except Exception as one:  # noqa: BLE001 - recorded as this image's failure
                lines.append(_failure(samples, method, index, one, spec))
    for index, text, per_image in results:
        reference = samples.text(index)
        s = metrics.score_pair(
            reference, text["prediction"], spec.normalize, spec.collapse_whitespace
        )
        line = {"index": index, "method": method.name, "reference": reference, **text}
        scores = {"cer": s.cer, "char_edits": s.char_edits, "chars": s.chars}
        lines.append({**line, **scores, "seconds": per_image})
    return sorted(lines, key=lambda line: line["index"]), seconds


def _failure(
    samples: Samples, method: Method, index: int, exc: BaseException, spec: RunSpec
) -> dict:
    """The line of an image that failed: scored as an empty prediction (every reference
    character an edit) when its reference could be read."""
    try:
        reference = samples.text(index)
    except Exception:  # noqa: BLE001 - the reference is informative only here
        reference = None
    counts = {}
    if reference is not None:
        s = metrics.score_pair(reference, "", spec.normalize, spec.collapse_whitespace)
        counts = {"char_edits": s.char_edits, "chars": s.chars}
    return {
        **counts,
        "index": index,
        "method": method.name,
        "reference": reference,
        "prediction": None,
        "cer": None,
        "seconds": 0.0,
        "error": f"{type(exc).__name__}: {exc}"[:500],
    }
