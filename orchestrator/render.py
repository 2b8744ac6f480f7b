"""Pure functions that turn library results into text for the `orch` commands.

Nothing here prints, reads files or talks to a host: each function takes the dataclasses the
library returns and gives back lines (or a `Table` of cells), so every view has a plain unit test.
`cli.py` decides where the text goes (stdout, stderr) and whether a table is drawn with rich.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .states import FINISHED

if TYPE_CHECKING:  # the library's own result types (imported for checking only: no cost)
    from .artifacts import OutputsResult
    from .doctor import DoctorReport
    from .envsetup import SetupResult
    from .fetch import FetchResult
    from .follow import HostEntry
    from .publish import PublishPlan
    from .publish_steps import PublishResult
    from .shards import ParentStatus, ShardedRun
    from .start import StartResult
    from .status import RunStatus
    from .sync import PushResult


@dataclass(frozen=True)
class Table:
    """Cells of a table: a title (or None), column names and rows of strings. The first column
    names the row and is never cut; on a narrow terminal the `drop` columns are left out, in
    that order, until it fits (`fit`), and the `wrap` columns may wrap at spaces."""

    title: str | None
    columns: list[str]
    rows: list[list[str]]
    drop: tuple[str, ...] = ()
    wrap: tuple[str, ...] = ()

    def widths(self) -> list[int]:
        """Each column's natural width (header included)."""
        return [max(len(str(x)) for x in col) for col in zip(self.columns, *self.rows, strict=True)]

    def needed(self, border: int = 3) -> int:
        """The narrowest it can be drawn: `wrap` columns at their longest word, the others at
        their natural width, `border` characters per column (rich: padding and rule) and one."""
        total = 1
        for i, name in enumerate(self.columns):
            cells = [name] + [str(r[i]) for r in self.rows]
            words = [w for c in cells for w in c.split()] if name in self.wrap else cells
            total += max(map(len, words), default=0) + border
        return total

    def fit(self, width: int, border: int = 3) -> Table:
        """This table without as many of its `drop` columns (in order) as it takes to fit."""
        table = self
        for name in self.drop:
            if table.needed(border) <= width:
                break
            i = table.columns.index(name)
            cols = table.columns[:i] + table.columns[i + 1 :]
            table = replace(table, columns=cols, rows=[r[:i] + r[i + 1 :] for r in table.rows])
        return table

    def plain(self) -> str:
        """Aligned columns without colour: for pipes, logs and tests."""
        widths = self.widths()
        lines = [self.title] if self.title else []
        for r in [self.columns, *self.rows]:
            lines.append(
                "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
            )
        return "\n".join(lines)


def to_json(data: Any) -> str:
    """Indented JSON; values JSON does not know (paths, enums) are written as text."""
    return json.dumps(data, indent=2, default=str)


def age(seconds: float | None) -> str:
    """A short duration: `42s`, `17m`, `2h05m`; `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def hosts_table(entries: Sequence[HostEntry]) -> Table:
    """`orch hosts list`: name, address, remote folder and where the host comes from."""
    return Table(
        None,
        ["host", "address", "remote_dir", "from"],
        [[e.name, e.hostname, e.remote_dir, e.source] for e in entries],
    )


DOCTOR_MARKS = {"ok": "ok", "fail": "FAIL", "warn": "warn", "skip": "-"}


def doctor_table(report: DoctorReport) -> Table:
    """`orch doctor`: one row per check."""
    return Table(
        f"doctor: {report.host}",
        ["check", "status", "detail"],
        [[c.name, DOCTOR_MARKS[str(c.status)], c.detail] for c in report.checks],
    )


def push_lines(res: PushResult) -> list[str]:
    """`orch push`: one summary line; with --dry-run, every file it would send or delete."""
    verb = "would send" if res.dry_run else "sent"
    lines = [
        f"{res.host}: {verb} {len(res.sent)} file(s), deleted {len(res.deleted)}, "
        f"{res.unchanged} unchanged, {res.bytes_sent} bytes, {res.seconds:.2f}s "
        f"(code {(res.identity.commit or 'no-commit')[:10]}"
        f"{'+dirty' if res.identity.dirty else ''})"
    ]
    if res.dry_run:
        lines += [f"  send   {p}" for p in res.sent]
        lines += [f"  delete {p}" for p in res.deleted]
    return lines


def setup_line(res: SetupResult) -> str:
    """`orch setup`: whether the venv changed and how many requirements it holds."""
    word = "updated" if res.changed else "already up to date"
    return f"{res.host}: {res.venv} {word} ({len(res.requirements)} requirements)"


def unreachable_lines(unreachable: dict[str, str]) -> list[str]:
    """One line per host that did not answer (for stderr: stdout stays the runs' table/JSON)."""
    return [
        f"orch: {why if why.startswith(name) else f'{name}: {why}'}"
        for name, why in unreachable.items()
    ]


STATUS_COLUMNS = ["run", "host", "playbook", "state", "progress", "method", "img/s"] + [
    "ETA",
    "updated",
    "elapsed",
    "cost",
]


def _status_row(s: RunStatus) -> list[str]:
    state = f"{s.state} (after {s.after})" if s.state == "queued" and s.after else str(s.state)
    state = state if s.reachable else f"unreachable (last: {state})"
    rate = f"{s.images_per_s:.2f}" if isinstance(s.images_per_s, (int, float)) else "-"
    eta = ("~" if s.eta_approximate and s.eta_s is not None else "") + age(s.eta_s)
    return [
        s.run_id,
        s.host,
        s.playbook,
        str(state),
        f"{s.done}/{s.total}" if s.total is not None else "-",
        (s.method or "-") + (f" ({s.lora_path})" if s.lora_path else ""),
        rate,
        eta,
        age(s.updated_age_s),
        age(s.elapsed_s),
        "-" if s.cost is None else f"${max(0.0, s.cost):.2f}",
    ]


# leave these out first when the terminal is narrow (the run id and its state always stay)
STATUS_DROP = ("playbook", "cost", "img/s", "updated", "elapsed", "method", "ETA", "host")
RECENT_FINISHED = 5  # finished runs `orch status` shows without -a


def status_table(statuses: Sequence[RunStatus]) -> Table:
    """`orch status`: one row per run."""
    rows = [_status_row(s) for s in statuses]
    return Table(None, STATUS_COLUMNS, rows, drop=STATUS_DROP, wrap=("state", "method"))


def recent(statuses: list[RunStatus], keep: int = RECENT_FINISHED) -> tuple[list[RunStatus], int]:
    """The runs `orch status` shows by default: every active run and the last `keep` finished
    ones, in order; and how many finished runs that leaves out."""
    finished = [s for s in statuses if s.state in FINISHED]
    hidden = {id(s) for s in finished[: max(0, len(finished) - keep)]}
    return [s for s in statuses if id(s) not in hidden], len(hidden)


def older_line(count: int) -> str:
    """What follows the table when finished runs were left out."""
    return f"… {count} older run{'s' if count != 1 else ''} (orch status -a)"


def status_notes(statuses: Sequence[RunStatus], detail: bool = False) -> list[str]:
    """What follows the table: why a run is queued/lost/failed/unreachable; a failed run's
    log tail with `detail` (the runs were named), else one line: its last log line."""
    lines = []
    for s in statuses:
        noted = ("lost", "queued", "not started", "skipped", "gone")
        if s.state == "failed" and not detail:
            lines.append(_failed_line(s))
        elif s.note and (not s.reachable or s.state in noted or s.state == "failed"):
            lines.append(f"{s.run_id}: {s.note}")
        if s.metrics:
            said = " ".join(f"{k}={_metric(v)}" for k, v in s.metrics.items())
            lines.append(f"{s.run_id}: step {s.done}/{s.total}: {said}")
        if detail and s.state == "failed" and s.log_tail:
            lines.append(f"--- last lines of {s.run_id} log.txt (exit code {s.exit_code}) ---")
            lines.extend(s.log_tail)
    return lines


def _failed_line(s: RunStatus) -> str:
    """A failed run in one line: its exit code and why (its note, else its log's last line)."""
    last = next((line.strip() for line in reversed(s.log_tail) if line.strip()), "")
    why = s.note or last[:200] or f"see `orch logs {s.run_id}`"
    code = f" (exit code {s.exit_code})" if s.exit_code not in (None, 0) else ""
    return f"{s.run_id}: failed{code}: {why}"


def _metric(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def no_runs_line(unreachable: dict[str, str]) -> str:
    """The line shown instead of an empty table."""
    return "no runs" + (" seen: some hosts did not answer" if unreachable else "")


def parent_lines(parents: Sequence[ParentStatus]) -> list[str]:
    """One line per sharded run: its combined state, progress, ETA and its shards' states."""
    lines = []
    for p in parents:
        shards = ", ".join(f"{n} {s}" for s, n in sorted(p.states.items()))
        lines.append(
            f"{p.parent}: {p.state}, {p.done}/{p.total} done, ETA {age(p.eta_s)} ({shards})"
        )
    return lines


def sharded_start_lines(run: ShardedRun) -> list[str]:
    """`orch run` over several hosts: the parent and where each shard started."""
    lines = [f"started {run.parent}: {run.num_shards} shards"]
    lines += [f"  {rid} on {host}" for rid, host in zip(run.shards, run.hosts, strict=True)]
    return lines


def start_lines(res: StartResult) -> list[str]:
    """`orch run`: where the run (or each shard) started; nothing for a followed run (its
    start was said before its log)."""
    if res.sharded is not None:
        return sharded_start_lines(res.sharded)
    if res.followed or res.record is None:
        return []
    return [f"{'resumed' if res.resumed else 'started'} {res.record.run_id} on {res.record.host}"]


def sharded_error_lines(run: ShardedRun) -> list[str]:
    """Shards that did not start, and how to start them again (for stderr)."""
    if not run.errors:
        return []
    lines = [f"orch: error: {err}" for err in run.errors]
    lines.append(f"start them again with `orch run --resume {run.parent} --shard N`")
    return lines


def fetch_lines(results: Sequence[FetchResult]) -> list[str]:
    """`orch fetch`: one line per run, a failed run's last log lines under it."""
    if not results:
        return ["nothing to fetch"]
    lines = []
    for r in results:
        where = f" -> {r.path}" if r.path else ""
        lines.append(
            f"{r.run_id}: {r.outcome} ({r.state}){where}" + (f": {r.error}" if r.error else "")
        )
        if r.state == "failed" and r.log_tail and str(r.outcome) == "fetched":
            lines.extend(f"  {line}" for line in r.log_tail)
    return lines


def outputs_lines(results: Sequence[OutputsResult]) -> list[str]:
    """`orch fetch --outputs`: per run, files sent and files already complete."""
    return [
        f"{r.run_id}: outputs -> {r.path}: {r.fetched} file(s) fetched "
        f"({r.bytes / (1 << 20):.1f} MB), {r.complete} already complete"
        for r in results
    ]


def publish_plan_lines(plan: PublishPlan) -> list[str]:
    """`orch publish --dry-run`: the README diff, the commit message and the Hub upload."""
    lines = [f"note: {n}" for n in plan.notes]
    lines.append(plan.readme_diff or "README.md: no change")
    lines += [f"  write {w}" for w in plan.writes]
    lines.append(
        f"commit message: {plan.message}" if plan.commit else "git: no commit (--no-commit)"
    )
    card = plan.hub_plan
    if card is None:
        lines.append("hub: nothing to upload (--no-hub, or no hub.repo_id in orch.yaml)")
        return lines
    how = "pull request" if card.create_pr else "commit to main"
    lines.append(f"hub: {card.repo_type} {card.repo_id}, {how}, README.md with model-index:")
    lines += [f"  {method} {metric} {value}" for method, metric, value in card.entries]
    return lines


def publish_lines(res: PublishResult) -> list[str]:
    """`orch publish`: each step's outcome in order (what was written, committed, pushed and
    uploaded); the failed step's error is printed after them, on stderr, by the command."""
    lines = [f"note: {n}" for n in res.notes]
    lines.append(f"published {', '.join(res.runs)}")
    lines += [f"  wrote {path}" for path in res.written]
    if res.exit_code and res.commit is None and not res.pushed_to:
        return lines  # failed while writing or committing: the error says so
    if not res.committing:
        lines.append("git: not committed (--no-commit)")
    elif res.commit is not None or res.exit_code == 0:
        lines.append(
            f"git: {'committed ' + res.commit[:10] if res.commit else 'nothing new to commit'}"
        )
    if res.pushed_to:
        lines.append(f"git: pushed to {res.pushed_to}")
    if res.exit_code:
        return lines
    if res.uploaded:
        lines.append(f"hub: uploaded {', '.join(res.uploaded)}: {res.hub}")
    elif res.hub == "up to date":
        lines.append("hub: up to date, nothing uploaded")
    else:
        lines.append(f"hub: {res.hub}")
    return lines


_AFTER_FAILURE = {
    4: "nothing was committed or uploaded; the next `orch publish` completes it",
    5: "the commit is local only and nothing was uploaded; fix the push, then re-run "
    "`orch publish --push`",
    6: "git is done; re-run `orch publish` to retry the upload",
}


def publish_error_line(res: PublishResult) -> str | None:
    """The failed step's error and what it leaves (stderr), or None when every step was done."""
    if not res.error:
        return None
    after = _AFTER_FAILURE.get(res.exit_code)
    return f"orch: error: {res.error}" + (f"; {after}" if after else "")
