"""Pure functions: render the results table and put it between the README markers.

Contract: `replace_block(text, block)` changes only what lies between
`<!-- orch:results:start -->` and `<!-- orch:results:end -->`; without markers it appends a
"Results" section holding them. Everything outside the markers is kept byte for byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

START = "<!-- orch:results:start -->"
END = "<!-- orch:results:end -->"
BASELINE_NAMES = ("baseline", "greedy")


class MarkerError(ValueError):
    """The README's markers are broken (one missing, repeated, or out of order)."""


@dataclass(frozen=True)
class RunTable:
    """One run's results as the README shows them."""

    run_id: str
    playbook: str
    results: dict
    plot_link: str | None = None

    @property
    def methods(self) -> list[str]:
        """Method names in results order."""
        return [k for k in self.results if k != "run"]

    @property
    def baseline(self) -> str:
        """The method the CER change is measured against: `baseline`, `greedy` or the first."""
        return next((m for m in BASELINE_NAMES if m in self.results), self.methods[0])

    @property
    def best(self) -> str:
        """The method with the lowest corpus CER."""
        return min(self.methods, key=lambda m: self.results[m]["cer"])


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def render_run(table: RunTable) -> str:
    """A Markdown table (one row per method) and the provenance line under it."""
    res, base = table.results, table.results[table.baseline]["cer"]
    lines = [
        f"### {table.playbook}",
        "",
        "| method | CER | Δ CER vs baseline | WER | exact match | s/image | images/s | n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in table.methods:
        r = res[m]
        cer = _fmt(r["cer"])
        if m == table.best:
            cer = f"**{cer}**"
        delta = "—" if m == table.baseline else f"{r['cer'] - base:+.3f}"
        failures = f" ({r['failures']} failed)" if r.get("failures") else ""
        lines.append(
            f"| {m} | {cer} | {delta} | {_fmt(r['wer'])} | {_fmt(r['exact_match'])} | "
            f"{r['time_per_image_s']:.3f} | {r['images_per_s']:.2f} | {r['n']}{failures} |"
        )
    run = res.get("run", {})
    when = run.get("ended_at") or run.get("started_at")
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)) if when else "date unknown"
    code = run.get("code") or {}
    commit = (code.get("commit") or "unknown")[:10] + (" (dirty)" if code.get("dirty") else "")
    gpu = run.get("gpu") or f"{run.get('device', 'cpu')} (no GPU)"
    data = run.get("data") or {}
    facts = [
        f"run `{table.run_id}`",
        date,
        f"host {run.get('host', '?')}, {gpu}",
        f"code `{commit}`",
        f"data `{data.get('source', '?')}` ({data.get('split', '?')}, "
        f"n={data.get('n_samples', '?')}, seed {data.get('seed', '?')})",
    ]
    lines += ["", " · ".join(facts)]
    if table.plot_link:
        lines += ["", f"![CER against seconds per image]({table.plot_link})"]
    return "\n".join(lines)


def render_block(tables: list[RunTable]) -> str:
    """Everything that goes between the markers."""
    return "\n\n".join(render_run(t) for t in tables)


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced by `block` (appended in a Results section if new)."""
    starts, ends = text.count(START), text.count(END)
    if starts == ends == 0:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}## Results\n\n{START}\n{block}\n{END}\n"
    if starts != 1 or ends != 1 or text.index(START) > text.index(END):
        raise MarkerError(
            f"expected one {START} before one {END}; found {starts} and {ends}: fix them by hand"
        )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def commit_message(tables: list[RunTable]) -> str:
    """`results: <run> — best CER 0.301 (combined), baseline 0.420` (runs joined by `; `)."""
    parts = []
    for t in tables:
        best, base = t.results[t.best]["cer"], t.results[t.baseline]["cer"]
        parts.append(f"{t.run_id} — best CER {best:.3f} ({t.best}), {t.baseline} {base:.3f}")
    return "results: " + "; ".join(parts)
