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
