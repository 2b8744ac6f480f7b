"""The JSON formats shared by the worker and the orchestrator. Standard library only.

results.json: one object per run. Each decoding method is a top-level key holding at least
``cer wer exact_match n failures time_per_image_s images_per_s`` (rates are fractions, 0.42);
the reserved key ``run`` holds provenance (run id, playbook, host, versions, code, data, times).
``n`` counts every line in the headline, failed ones included (a failed line scores as an empty
prediction); ``failures`` says how many of them failed. A method with no scored sample
(``failures == n``) has null rates and timings (``NULLABLE``);
a method with rates may carry ``cer_ci``/``wer_ci`` ([low, high] 95% intervals) and
``vs_baseline`` (the paired comparison with the baseline, see ``stats.py``: ``p_value`` and its
Holm adjustment ``p_holm`` over every method compared with that baseline, both in [0, 1],
``p_holm >= p_value``; files written before ``p_holm`` lack it), a method may carry
``wrong_script_rate`` (share of predicted letters outside ``data.script``, a fraction or null) and
``groups`` (``scoring.group_by``: per group value ``cer wer n`` and the intervals), and a method
that ran a model ``lora_path``: how it ran its checkpoints (``merged``, ``stacked``, ``base`` or
``peft (why)``). A method may carry ``errors`` (null when nothing was decoded; see
``errors.py``): ``substitutions insertions deletions`` (integers), ``confusions``
(``[ref, hyp, count]``) and ``classes`` (class name -> count).

progress.json: ``done total method images_per_s eta_s updated_at`` (updated_at: unix seconds),
and ``lora_path`` of the current method when it runs a model.

`best_method` is the one rule for "best": the lowest corpus CER among methods with a rate; a
method with no scored sample (null rates) is never best. Ties go to the earlier method.
"""

from __future__ import annotations

import math
from typing import Any

RUN_KEY = "run"
METHOD_FIELDS = ("cer", "wer", "exact_match", "n", "failures", "time_per_image_s", "images_per_s")
NULLABLE = ("cer", "wer", "exact_match", "time_per_image_s", "images_per_s")
LORA_PATHS = ("merged", "stacked", "base", "peft")  # how a method ran its checkpoints
PROGRESS_FIELDS = ("done", "total", "method", "images_per_s", "eta_s", "updated_at")


class SchemaError(ValueError):
    """A results or progress document does not have the agreed shape."""


MAX_JSON_DEPTH = 32  # results, progress and run files nest a few levels; deeper is hostile


def loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing (SchemaError, a ValueError) a document nested deeper than
    `max_depth`: nothing read from a host can exhaust the stack of whoever walks it next."""
    import json

    try:
        doc = json.loads(text)
    except RecursionError:
        raise SchemaError(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    stack = [(doc, 1)]
    while stack:  # iterative: no recursion of our own either
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise SchemaError(f"JSON nested deeper than {max_depth} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
    return doc


def _number(value: Any, where: str, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise SchemaError(f"{where}: expected {kind}, got {value!r}")
    if value < 0:
        raise SchemaError(f"{where}: expected >= 0, got {value!r}")


def validate_results(doc: Any) -> dict:
    """Return `doc` if it is a valid results object, else raise SchemaError naming the field."""
    if not isinstance(doc, dict):
        raise SchemaError("results: expected a JSON object")
    if not isinstance(doc.get(RUN_KEY), dict):
        raise SchemaError(f"results.{RUN_KEY}: missing provenance object")
    methods = method_names(doc)
    if not methods:
        raise SchemaError("results: no method results")
    for name in methods:
        body = doc[name]
        if not isinstance(body, dict):
            raise SchemaError(f"results.{name}: expected an object")
        _validate_method(name, body)
    return doc


def _validate_method(name: str, body: dict) -> None:
    for field in METHOD_FIELDS:
        if field not in body:
            raise SchemaError(f"results.{name}.{field}: missing")
    failed = body["failures"] == body["n"]
    for field in METHOD_FIELDS:
        if body[field] is None and field in NULLABLE:
            if not failed:
                raise SchemaError(
                    f"results.{name}.{field}: null only for a method with no scored sample"
                )
            continue
        _number(body[field], f"results.{name}.{field}", integer=field in ("n", "failures"))
    path = body.get("lora_path")
    if path is not None and (not isinstance(path, str) or not path.startswith(LORA_PATHS)):
        raise SchemaError(f"results.{name}.lora_path: expected one of {LORA_PATHS}, got {path!r}")
    for field in ("warmup_s", "wall_s"):  # optional: timing of the run that wrote it
        if field in body:
            _number(body[field], f"results.{name}.{field}")
    for field in ("exact_match", "wrong_script_rate"):
        if body.get(field) is not None:
            _number(body[field], f"results.{name}.{field}")
            if body[field] > 1:
                raise SchemaError(f"results.{name}.{field}: expected a fraction <= 1")
    for field in ("cer_ci", "wer_ci"):
        ci = body.get(field)
        if ci is None:
            continue
        if not isinstance(ci, list) or len(ci) != 2:
            raise SchemaError(f"results.{name}.{field}: expected [low, high]")
        for v in ci:
            _number(v, f"results.{name}.{field}")
        if ci[0] > ci[1]:
            raise SchemaError(f"results.{name}.{field}: low > high")
    _validate_vs(f"results.{name}.vs_baseline", body.get("vs_baseline"))
    _validate_vs(f"results.{name}.vs_source", body.get("vs_source"))  # derived methods
    _validate_errors(f"results.{name}.errors", body.get("errors"))


def _validate_errors(where: str, doc: Any) -> None:
    """The error analysis: counts are integers >= 0, confusions `[ref, hyp, count]`."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise SchemaError(f"{where}: expected an object")
    for field in ("substitutions", "insertions", "deletions"):
        _number(doc.get(field), f"{where}.{field}", integer=True)
    classes = doc.get("classes")
    if not isinstance(classes, dict):
        raise SchemaError(f"{where}.classes: expected an object of counts")
    for key, count in classes.items():
        _number(count, f"{where}.classes.{key}", integer=True)
    confusions = doc.get("confusions")
    if not isinstance(confusions, list):
        raise SchemaError(f"{where}.confusions: expected a list of [ref, hyp, count]")
    for k, pair in enumerate(confusions):
        ok = isinstance(pair, list) and len(pair) == 3 and all(isinstance(c, str) for c in pair[:2])
        if not ok:
            raise SchemaError(f"{where}.confusions[{k}]: expected [ref, hyp, count]")
        _number(pair[2], f"{where}.confusions[{k}]", integer=True)


def _validate_vs(where: str, vs: Any) -> None:
    """A paired comparison: its p-values are probabilities, the Holm one never below the raw."""
    if vs is None:
        return
    if not isinstance(vs, dict):
        raise SchemaError(f"{where}: expected an object")
    for field in ("p_value", "p_holm"):
        if field == "p_value" or field in vs:
            _number(vs.get(field), f"{where}.{field}")
            if vs[field] > 1:
                raise SchemaError(f"{where}.{field}: expected a probability <= 1")
    if "p_holm" in vs and vs["p_holm"] < vs["p_value"]:
        raise SchemaError(f"{where}.p_holm: below p_value (a Holm adjustment never lowers it)")


def validate_progress(doc: Any) -> dict:
    """Return `doc` if it is a valid progress object, else raise SchemaError."""
    if not isinstance(doc, dict):
        raise SchemaError("progress: expected a JSON object")
    for field in PROGRESS_FIELDS:
        if field not in doc:
            raise SchemaError(f"progress.{field}: missing")
    for field in ("done", "total"):
        _number(doc[field], f"progress.{field}", integer=True)
    return doc


def method_names(doc: dict) -> list[str]:
    """The method keys of a results object, in file order."""
    return [k for k in doc if k != RUN_KEY]


def best_method(results: dict) -> str | None:
    """The method with the lowest corpus CER among those that have one; None if none has."""
    best, best_cer = None, math.inf
    for name in method_names(results):
        body = results[name]
        if not isinstance(body, dict):
            continue
        cer = body.get("cer")
        if isinstance(cer, (int, float)) and not isinstance(cer, bool) and body.get("n", 0) > 0:
            if cer < best_cer:
                best, best_cer = name, cer
    return best


def cost_per_1k_lines(time_per_image_s: float | None, hourly_rate: float | None) -> float | None:
    """What 1,000 lines cost at the steady-state time per line and the host's price per hour
    (same currency as `hourly_rate`, 6 decimals); None when either is unknown or not a number."""
    ok = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in (time_per_image_s, hourly_rate)
    )
    return round(time_per_image_s * hourly_rate / 3.6, 6) if ok else None  # type: ignore[operator]


# -- the progress line of a `command:` job ---------------------------------------------------
# A training command reports progress by printing lines like
#   orch-progress step=120 total=500 loss=0.41 eval_cer=0.38
# (space-separated key=value after the word; `step` and `total` integers, other values numbers
# or short strings without spaces; the last such line in log.txt counts).
PROGRESS_WORD = "orch-progress"
PROGRESS_VALUE_MAX = 40


def progress_line(step: int, total: int | None = None, **metrics: float | int | str | None) -> str:
    """The line a `command:` job prints to report its progress (see above). A metric that is
    None or NaN (not known yet) is left out; floats are written in 4 significant digits."""
    pairs = {"step": int(step), **({"total": int(total)} if total is not None else {})}
    for key, value in metrics.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        pairs[key] = f"{value:.4g}" if isinstance(value, float) else value
    for key, value in pairs.items():
        text = str(value)
        if not key.isidentifier() or not text or any(c.isspace() for c in text):
            raise ValueError(f"{PROGRESS_WORD}: {key}={value!r} is not a key=value word")
    return " ".join([PROGRESS_WORD, *(f"{k}={v}" for k, v in pairs.items())])


def parse_progress_line(line: str) -> dict[str, int | float | str] | None:
    """The key=values of one progress line (`step`/`total` as int, numbers as float, short
    strings kept; malformed words skipped), or None when `line` is not one."""
    words = line.strip().split()
    if not words or words[0] != PROGRESS_WORD:
        return None
    out: dict[str, int | float | str] = {}
    for word in words[1:]:
        key, sep, raw = word.partition("=")
        if not sep or not key.isidentifier() or not raw:
            continue
        if key in ("step", "total"):
            if raw.isdigit():
                out[key] = int(raw)
            continue
        try:
            number = float(raw)
        except ValueError:
            if len(raw) <= PROGRESS_VALUE_MAX:
                out[key] = raw
            continue
        if math.isfinite(number):
            out[key] = number
    return out
