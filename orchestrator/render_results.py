"""Pure text for `orch results`: the table of `comparison.ComparisonRow`s (one row per fetched
run and method) and the price cells. Nothing printed or read here (as `render.py`).

Cells: an interval as `0.200 (0.100-0.300)`, a paired ΔCER as `-0.050 (-0.080..-0.010) *`
(`*`: significant, the rule recorded in results.json), `-` for anything unknown, a failed
method as `failed (k of n)`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .readme import num
from .render import Table

if TYPE_CHECKING:
    from .comparison import ComparisonRow

RESULTS_COLUMNS = ["run", "date", "method", "CER (95% CI)", "ΔCER vs base", "p", "lines needed"] + [
    "WER",
    "exact",
    "s/image",
    "images/s",
    "n",
    "wrong script",
    "$/1k lines",
    "overrides",
    "LoRA path",
]


def money(value: float | None) -> str:
    """A price: `$0.022`, `$1.40`; `-` when unknown (never `$-0.00`: a negative is shown as 0)."""
    if value is None:
        return "-"
    value = max(0.0, value)
    return f"${value:.3f}" if value < 1 else f"${value:.2f}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _paired(row: ComparisonRow) -> list[str]:
    """ΔCER vs base with its interval, p (and its Holm adjustment when it differs), lines
    needed (`identical` when no n would tell them apart); `-` each without a paired test."""
    if row.delta_cer is None:
        return ["-", "-", "-"]
    lo, hi = row.delta_ci
    mark = " *" if row.significant else ""
    p = f"{row.p_value:.3g}"
    if row.p_holm is not None and row.p_holm != row.p_value:
        p += f" (Holm {row.p_holm:.3g})"
    needed = "identical" if row.identical else str(row.lines_needed)
    return [f"{row.delta_cer:+.3f} ({lo:+.3f}..{hi:+.3f}){mark}", p, needed]


def view_cells(row: ComparisonRow) -> list[str]:
    """The cells of one row from `method` to `wrong script`: method, CER with interval or
    `failed (k of n)`, ΔCER, p, lines needed, WER, exact, s/image, images/s, n, wrong script
    (share of letters)."""
    if row.cer is None:
        cer = f"failed ({row.failures} of {row.n})"
    else:
        ci = row.cer_ci
        cer = num(row.cer) + (f" ({num(ci[0])}-{num(ci[1])})" if ci else "")
    return [
        row.method,
        cer,
        *_paired(row),
        _num(row.wer, 3),
        _num(row.exact_match, 3),
        _num(row.time_per_image_s, 3),
        _num(row.images_per_s, 2),
        str(row.n) + (f" ({row.failures} failed)" if row.failures else ""),
        _num(row.wrong_script_rate, 3),
    ]


def results_table(rows: list[ComparisonRow]) -> Table:
    """`orch results`: one row per run and method, oldest first."""
    return Table(
        None,
        RESULTS_COLUMNS,
        [
            [r.run_id, time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.started_at))]
            + view_cells(r)
            + [money(r.cost_per_1k_lines), " ".join(r.overrides) or "-"]
            + [str(r.lora_path or "-")]
            for r in rows
        ],
    )
