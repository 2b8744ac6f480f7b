"""Pure functions: render the results table and put it between the README markers.

Contract: `replace_block(text, block)` changes only what lies between
`<!-- orch:results:start -->` and `<!-- orch:results:end -->`; without markers it appends a
"Results" section holding them. Everything outside the markers is kept byte for byte.

A marker counts only on a line of its own (up to 3 spaces of indent, as CommonMark allows) and
outside fenced code blocks, so a README that shows the markers in code, or inline, is not cut
there. A new README whose markers would not read back as exactly one pair around the new block
is refused (`MarkerError`) before anything is written. Text that comes from a results file
(host, GPU, data source...) is escaped: it can neither end a line nor open HTML or Markdown.
"""

from __future__ import annotations

import re
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&~!#])")


def md_text(value: object, limit: int = 200) -> str:
    """`value` as one line of plain Markdown text: no line breaks, punctuation escaped."""
    flat = _CONTROL.sub(" ", str(value)).strip()[:limit]
    return _MARKDOWN.sub(r"\\\1", flat)


def md_code(value: object, limit: int = 200) -> str:
    """`value` as an inline code span on one line (backticks and line breaks removed)."""
    flat = _CONTROL.sub(" ", str(value)).replace("`", "'").strip()[:limit]
    return f"`{flat or ' '}`"


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
    lines += ["", " · ".join(_facts(table))]
    if table.plot_link:
        lines += ["", f"![CER against seconds per image]({table.plot_link})"]
    return "\n".join(lines)


def _facts(table: RunTable) -> list[str]:
    """The provenance line's parts; every value from the results file is escaped."""
    run = table.results.get("run", {})
    when = run.get("ended_at") or run.get("started_at")
    ok_time = isinstance(when, (int, float)) and 0 < when < 1e11
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)) if ok_time else "date unknown"
    code = run.get("code") if isinstance(run.get("code"), dict) else {}
    commit = str(code.get("commit") or "unknown")[:10] + (" (dirty)" if code.get("dirty") else "")
    gpu = run.get("gpu") or f"{run.get('device', 'cpu')} (no GPU)"
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    return [
        f"run {md_code(table.run_id)}",
        date,
        f"host {md_text(run.get('host', '?'))}, {md_text(gpu)}",
        f"code {md_code(commit)}",
        f"data {md_code(data.get('source', '?'))} ({md_text(data.get('split', '?'))}, "
        f"n={md_text(data.get('n_samples', '?'))}, seed {md_text(data.get('seed', '?'))})",
    ]


def render_block(tables: list[RunTable]) -> str:
    """Everything that goes between the markers."""
    return "\n\n".join(render_run(t) for t in tables)


def find_markers(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) character spans of every START and END marker that counts: alone on its
    line (indent < 4 spaces) and outside fenced code blocks. Returned as (starts, ends)."""
    starts: list[tuple[int, int]] = []
    ends: list[tuple[int, int]] = []
    fence: str | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        stripped = body.lstrip(" ")
        indent = len(body) - len(stripped)
        opener = _FENCE.match(stripped) if indent < 4 else None
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                if not stripped[len(opener.group(1)) :].strip():
                    fence = None
        elif opener and not (opener.group(1)[0] == "`" and "`" in opener.group(2)):
            fence = opener.group(1)
        elif indent < 4 and stripped.rstrip() in (START, END):
            span = (offset + indent, offset + indent + len(stripped.rstrip()))
            (starts if stripped.rstrip() == START else ends).append(span)
        offset += len(line)
    return starts, ends


_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")


def _one_pair(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    starts, ends = find_markers(text)
    if len(starts) != 1 or len(ends) != 1 or starts[0][0] > ends[0][0]:
        raise MarkerError(
            f"expected one {START} before one {END}, each on its own line outside code; "
            f"found {len(starts)} and {len(ends)}: fix them by hand"
        )
    return starts[0], ends[0]


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced by `block` (appended in a Results section if new).

    Raises MarkerError when the README's markers are broken, or when the result would not have
    exactly one marker pair around `block` (a block holding a marker or an open code fence,
    or markers appended inside an unclosed fence); nothing is written by this function.
    """
    starts, ends = find_markers(text)
    if not starts and not ends:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{sep}## Results\n\n{START}\n{block}\n{END}\n"
    else:
        (s0, s1), (e0, e1) = _one_pair(text)
        new = f"{text[:s0]}{START}\n{block}\n{END}{text[e1:]}"
    try:
        (_, n1), (n0, _) = _one_pair(new)
    except MarkerError:
        raise MarkerError(
            f"the new README would not keep one {START} ... {END} pair (an unclosed ``` "
            "fence, or a marker inside the results): fix the README by hand; nothing was written"
        ) from None
    if new[n1:n0] != f"\n{block}\n":
        raise MarkerError("the new results block would not read back intact; nothing was written")
    return new


def commit_message(tables: list[RunTable]) -> str:
    """`results: <run> — best CER 0.301 (combined), baseline 0.420` (runs joined by `; `)."""
    parts = []
    for t in tables:
        best, base = t.results[t.best]["cer"], t.results[t.baseline]["cer"]
        parts.append(f"{t.run_id} — best CER {best:.3f} ({t.best}), {t.baseline} {base:.3f}")
    return "results: " + "; ".join(parts)
