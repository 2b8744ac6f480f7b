"""Gates before a long run: refuse what is wrong after minutes, not after hours.

Standard library at import time (`spec.py` checks the settings with `settings_problem`); the
tensor work lives in `fastpath/deltas.py`, imported only when a model is loaded. Contract:

- `scoring.preflight: on` (the default) turns the gates on; `off` skips every one of them.
- Adapters (`check_adapters`), on the tensors the engine loaded (fast path and peft alike): a
  checkpoint whose LoRA delta is zero or negligible against the base weights (relative Frobenius
  norm of the summed `scaling * B @ A` over the touched projections below `NOOP_RELATIVE`), and
  checkpoints whose tensors are identical, are warnings (in the log and `run.preflight` of
  results.json); `scoring.fail_on_noop: true` turns them into a `PreflightError`.
- First batch (`check_first_batch`): each method's first decoded batch is checked before the
  rest: every prediction empty, or more than 4 in 5 of its letters outside the expected script
  (`data.script`, see `SCRIPTS`; `none` turns the script check off), stops the run with a
  `PreflightError` (exit 1) showing three predictions beside their references.
- `wrong_script_rate`: the share of predicted letters (Unicode letters and marks, and the digits
  of a script such as ୧) outside the script; ASCII digits, punctuation, symbols and spaces are
  neutral. None without letters or script.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from .schema import did_you_mean

# script -> code point ranges (inclusive) its letters may come from
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "odia": ((0x0B00, 0x0B7F),),
    "telugu": ((0x0C00, 0x0C7F),),
    "bengali": ((0x0980, 0x09FF),),
    "devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "tamil": ((0x0B80, 0x0BFF),),
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "none": (),
}
NO_SCRIPT = "none"
SWITCHES = ("on", "off")
NOOP_RELATIVE = 1e-6  # |delta W| / |W| below this: the adapter changes nothing that matters
WRONG_SCRIPT_LIMIT = 0.8  # more than 4 in 5 of the first batch's letters outside: stop
SHOWN = 3


class PreflightError(RuntimeError):
    """A gate refused the run; the message says what was seen and what to check."""


def _is_letter(ch: str) -> bool:
    """A letter or mark, or a digit of a script (ASCII digits belong to every script)."""
    kind = unicodedata.category(ch)
    return kind[0] in ("L", "M") or (kind == "Nd" and ord(ch) > 0x7F)


def letter_counts(text: str, script: str) -> tuple[int, int]:
    """(letters outside `script`, letters) in `text`; (0, 0) for script `none`."""
    ranges = SCRIPTS[script]
    if not ranges:
        return 0, 0
    outside = letters = 0
    for ch in text:
        if _is_letter(ch):
            letters += 1
            code = ord(ch)
            outside += not any(lo <= code <= hi for lo, hi in ranges)
    return outside, letters


def wrong_script_rate(texts: Iterable[str], script: str) -> float | None:
    """The share of the letters of `texts` outside `script` (None: no letters, or `none`)."""
    outside = letters = 0
    for text in texts:
        o, n = letter_counts(text or "", script)
        outside, letters = outside + o, letters + n
    return outside / letters if letters else None


def _shown(lines: list[dict]) -> str:
    return "; ".join(
        f"#{line['index']} predicted {line['prediction']!r}, reference {line['reference']!r}"
        for line in lines[:SHOWN]
    )


def check_first_batch(method: str, lines: list[dict], script: str) -> None:
    """Raise PreflightError when the first batch of `method` is all empty or in another script.

    `lines` are the batch's prediction lines; failed images (`error`) are not judged here.
    """
    decoded = [line for line in lines if "error" not in line]
    if not decoded:
        return
    hint = "check model.prompt_format and model.prompt, and the checkpoint"
    if all(not (line["prediction"] or "").strip() for line in decoded):
        raise PreflightError(
            f"preflight: {method}: every prediction of the first batch is empty "
            f"({len(decoded)} image(s)): {_shown(decoded)}; {hint} "
            "(scoring.preflight: off skips this check)"
        )
    rate = wrong_script_rate((line["prediction"] for line in decoded), script)
    if rate is not None and rate > WRONG_SCRIPT_LIMIT:
        raise PreflightError(
            f"preflight: {method}: {rate:.0%} of the first batch's letters are outside the "
            f"{script} script (data.script): {_shown(decoded)}; {hint}, or set data.script "
            f"({', '.join(SCRIPTS)}) (scoring.preflight: off skips this check)"
        )


def check_adapters(report: dict, fail_on_noop: bool) -> list[str]:
    """Warnings about no-op and identical adapters in `report` (`fastpath.deltas.adapter_report`);
    PreflightError instead when `fail_on_noop`."""
    found = []
    for name, body in report.get("adapters", {}).items():
        rel = body["relative_delta"]
        if rel < NOOP_RELATIVE:
            what = "all zero" if rel == 0 else f"negligible ({rel:.1e} of the base weights)"
            found.append(
                f"checkpoint {name}: its LoRA delta is {what}: it decodes as the base model "
                "(was it trained? a loss and grad_norm of 0.0 in trainer_state.json mean no)"
            )
    for group in report.get("identical", []):
        found.append(f"checkpoints {', '.join(group)} hold identical LoRA tensors")
    if found and fail_on_noop:
        raise PreflightError(f"preflight: {found[0]} (scoring.fail_on_noop: true)")
    return [f"preflight: warning: {text}" for text in found]


def settings_problem(data: dict, scoring: dict) -> str | None:
    """What is wrong with `data.script`, `data.holdout` ({test_size, seed}) or the gates'
    settings (`scoring.preflight` on|off, YAML's bare on/off arriving as booleans;
    `fail_on_noop`; `group_by`, a column name or null); None when nothing. Values are
    normalised in place (preflight to on/off, holdout's seed filled in)."""
    if data["script"] not in SCRIPTS:
        hint = did_you_mean(data["script"], SCRIPTS)
        return f"data.script: unknown '{data['script']}'{hint}; known: {', '.join(SCRIPTS)}"
    if data["holdout"] is not None:
        problem = _holdout_problem(data)
        if problem:
            return problem
    value = scoring["preflight"]
    if isinstance(value, bool):
        scoring["preflight"] = value = "on" if value else "off"
    if value not in SWITCHES:
        return f"scoring.preflight: expected on or off, got {value!r}"
    if not isinstance(scoring["fail_on_noop"], bool):
        return f"scoring.fail_on_noop: expected true or false, got {scoring['fail_on_noop']!r}"
    group = scoring["group_by"]
    if group is not None and (not isinstance(group, str) or not group):
        return f"scoring.group_by: expected a column name, got {group!r}"
    return None


def _holdout_problem(data: dict) -> str | None:
    holdout = data["holdout"]
    if not isinstance(holdout, dict):
        return "data.holdout: expected a mapping like {test_size: 0.1, seed: 42}"
    for key in holdout:
        if key not in ("test_size", "seed"):
            return f"data.holdout.{key}: unknown setting{did_you_mean(key, ('test_size', 'seed'))}"
    data["holdout"] = holdout = {
        "test_size": holdout.get("test_size"),
        "seed": holdout.get("seed", 42),
    }
    size, seed = holdout["test_size"], holdout["seed"]
    fraction = isinstance(size, float) and 0 < size < 1
    count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
    if not (fraction or count):
        return (
            "data.holdout.test_size: expected a fraction between 0 and 1 or a number of rows, "
            f"got {size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return f"data.holdout.seed: expected an integer >= 0, got {seed!r}"
    return None
