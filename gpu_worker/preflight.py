"""Gates before a long run: refuse what is wrong after minutes, not after hours.

Standard library at import time (its settings are checked by `contract/checks.py`); the
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

from .contract.checks import SCRIPTS

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
