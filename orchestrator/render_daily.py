"""Pure text for the daily-use commands (`wait`, `compare`) and the cost column: lines and
tables from library results, nothing printed or read here (as `render.py`)."""

from __future__ import annotations

from .render import age


def wait_line(s) -> str:
    """`orch wait`: one line per state a run was seen in."""
    extra = f" (exit {s.exit_code})" if s.exit_code not in (None, 0) else ""
    note = f": {s.note}" if s.note and s.state != "running" else ""
    took = f" after {age(s.elapsed_s)}" if s.state.finished and s.elapsed_s is not None else ""
    return f"{s.run_id}: {s.state}{extra}{took}{note}"


def wait_timeout_line(outcome, timeout: float) -> str:
    """`orch wait --timeout`: which runs had not ended when it ran out."""
    from .waiting import ended

    still = [f"{s.run_id} ({s.state})" for s in outcome.runs if not ended(s)]
    return f"orch: still not ended after {timeout:g}s: {', '.join(still)}"


COMPARE_COLUMNS = ["method", "n A", "n B", "matched", "CER A", "CER B", "ΔCER B-A (95% CI)"] + [
    "p",
    "lines needed",
]


def compare_table(res):
    """`orch compare`: one row per method, Δ = CER(B) - CER(A) on the matched lines."""
    from .render import Table

    rows = []
    for m in res.methods:
        p = m.paired
        mark = " *" if p.significant else ""
        delta = f"{p.delta:+.3f} ({p.ci[0]:+.3f}..{p.ci[1]:+.3f}){mark}"
        needed = "identical" if p.identical else str(p.lines_needed)
        cells = [m.method, str(m.n_a), str(m.n_b), str(p.n), f"{m.cer_a:.3f}", f"{m.cer_b:.3f}"]
        rows.append(cells + [delta, f"{p.p_value:.3g}", needed])
    return Table(f"{res.run_b} vs {res.run_a}", COMPARE_COLUMNS, rows)


def compare_notes(res) -> list[str]:
    """What the table does not say: lines one run scored and the other did not, identical
    methods, and what `*` means."""
    lines = []
    for m in res.methods:
        p = m.paired
        if m.n_a != m.n_b or p.n != m.n_a:
            lines.append(
                f"{m.method}: {res.run_a} scored {m.n_a} lines, {res.run_b} {m.n_b}; "
                f"compared on the {p.n} both scored"
            )
        if p.identical:
            lines.append(f"{m.method}: the same edits on every matched line (identical)")
    if any(m.paired.significant for m in res.methods):
        lines.append("*: the interval excludes 0 and p < 0.05")
    return lines
