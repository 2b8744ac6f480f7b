"""The JSON formats shared by the worker and the orchestrator. Standard library only.

results.json: one object per run. Each decoding method is a top-level key holding at least
``cer wer exact_match n failures time_per_image_s images_per_s`` (rates are fractions, 0.42);
the reserved key ``run`` holds provenance (run id, playbook, host, versions, code, data, times).
``n`` counts every line in the headline, failed ones included (a failed line scores as an empty
prediction); ``failures`` says how many of them failed. A method with no scored sample
(``failures == n``) has null rates and timings (``NULLABLE``);
a method with rates may carry ``cer_ci``/``wer_ci`` ([low, high] 95% intervals) and
``vs_baseline`` (the paired comparison with the baseline, see ``stats.py``).

progress.json: ``done total method images_per_s eta_s updated_at`` (updated_at: unix seconds).
"""

from __future__ import annotations

import math
from typing import Any

RUN_KEY = "run"
IDENTITY_FILE = ".orch-identity.json"  # the pushed tree's identity, written by `orch push`
METHOD_FIELDS = ("cer", "wer", "exact_match", "n", "failures", "time_per_image_s", "images_per_s")
NULLABLE = ("cer", "wer", "exact_match", "time_per_image_s", "images_per_s")
PROGRESS_FIELDS = ("done", "total", "method", "images_per_s", "eta_s", "updated_at")


def did_you_mean(name: object, choices: Any) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or an empty string."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


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
    for field in ("warmup_s", "wall_s"):  # optional: timing of the run that wrote it
        if field in body:
            _number(body[field], f"results.{name}.{field}")
    if body["exact_match"] is not None and body["exact_match"] > 1:
        raise SchemaError(f"results.{name}.exact_match: expected a fraction <= 1")
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
