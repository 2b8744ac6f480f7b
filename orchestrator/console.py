"""The output side of the `orch` command line: global state, the error-to-exit-code mapping,
and writing what `render` produced to the terminal (rich tables on a terminal, plain text
otherwise), the push progress bar and a followed log.

A command returns its result (an `Outcome`: it carries its `exit_code`); `OrchGroup` shows it
(`show`: JSON with `--json`, else text) and exits with that code, once. An `OrchError` or Ctrl-C
is reported in one line (`report`); anything else is a bug: `orch: internal error: … (run with
-v)`, exit 1.
"""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from . import config as config_mod
from . import render
from .errors import EXIT_FAILED, OrchError, exit_code_for, message_for

if TYPE_CHECKING:
    from .hosts import Hosts
    from .jobs import StatusReport
    from .shards import ParentStatus
    from .status import RunStatus


@dataclass
class State:
    """Global options shared by every command (`as_json`: the command was given `--json`), and
    what a command loads once: orch.yaml and its hosts (one connection per host for the whole
    command, closed by `close`)."""

    config_path: Path | None
    verbose: bool
    as_json: bool = False
    _config: config_mod.Config | None = field(default=None, repr=False)
    _hosts: Hosts | None = field(default=None, repr=False)

    def config(self) -> config_mod.Config:
        """The loaded orch.yaml (or defaults when there is none), loaded once."""
        if self._config is None:
            self._config = config_mod.load_config(self.config_path)
        return self._config

    def hosts(self) -> Hosts:
        """The command's hosts: `--host` values resolved once, one connection per host."""
        if self._hosts is None:
            from .hosts import Hosts

            self._hosts = Hosts(self.config())
        return self._hosts

    def close(self) -> None:
        """Close the command's connections."""
        if self._hosts is not None:
            self._hosts.close()


def report(exc: BaseException, verbose: bool) -> int:
    """The single error handler: one line on stderr (the traceback too with --verbose); returns
    the exit code of `errors.exit_code_for`."""
    if verbose and not isinstance(exc, KeyboardInterrupt):
        traceback.print_exc()
    click.echo(message_for(exc), err=True)
    return exit_code_for(exc)


class Outcome(Protocol):
    """A command's result: what it did, and the exit code that says so (the types `show`
    knows: `outcome_types`)."""

    @property
    def exit_code(self) -> int: ...


def outcome_types() -> tuple[type, ...]:
    """The results a command returns for the group to show (imported when one is returned)."""
    from .doctor import DoctorReport
    from .fetch import FetchReport
    from .start import StartResult

    return (StatusPage, DoctorReport, FetchReport, StartResult)


def internal_error(exc: Exception, verbose: bool) -> int:
    """A bug, not a user error: one line (the traceback with -v); exit 1."""
    if verbose:
        traceback.print_exc()
    click.echo(f"orch: internal error: {type(exc).__name__}: {exc} (run with -v)", err=True)
    return EXIT_FAILED


class OrchGroup(click.Group):
    """A click group that shows each command's `Outcome` and exits with its code, and hands
    `OrchError` and Ctrl-C to `report` (the single handler), any other error to
    `internal_error`."""

    def invoke(self, ctx: click.Context):
        def state() -> State:  # set by the group's own callback, inside `super().invoke`
            return ctx.obj if isinstance(ctx.obj, State) else State(None, False)

        try:
            result = super().invoke(ctx)
            if result is None or not isinstance(result, outcome_types()):
                return result
            show(result, state().as_json)
            code = result.exit_code
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (OrchError, KeyboardInterrupt) as exc:
            code = report(exc, state().verbose)
        except Exception as exc:  # noqa: BLE001 (the last resort: a bug)
            code = internal_error(exc, state().verbose)
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()
        ctx.exit(code)


def echo(lines: list[str], err: bool = False) -> None:
    """Each line on stdout (or stderr)."""
    for line in lines:
        click.echo(line, err=err)


def table(table: render.Table) -> None:
    """A rich table on a terminal; plain aligned columns otherwise (pipes, logs, tests)."""
    if not sys.stdout.isatty():
        return click.echo(table.plain())
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = table.fit(console.width)
    out = Table(title=table.title, show_lines=False)
    first = table.widths()[0] if table.columns else 0
    for i, c in enumerate(table.columns):  # the first column (a run id) is never cut
        out.add_column(c, no_wrap=i == 0, min_width=first if i == 0 else None, overflow="fold")
    for r in table.rows:
        out.add_row(*r)
    console.print(out)


def echo_wrapped(lines: list[str]) -> None:
    """Lines on stdout; on a terminal, wrapped at its width between words (ids stay whole)."""
    if not sys.stdout.isatty():
        return echo(lines)
    import shutil
    import textwrap

    width = shutil.get_terminal_size().columns
    for line in lines:
        parts = textwrap.wrap(
            line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
        )
        echo(parts or [""])


def json_out(data) -> None:
    """Indented JSON on stdout."""
    click.echo(render.to_json(data))


@contextmanager
def connected(state: State, host_name: str | None):
    """The configuration and an open connection to `--host`."""
    hosts = state.hosts()
    yield state.config(), hosts.open(hosts.host(host_name))


def show_push(res, as_json: bool) -> None:
    """A push result as JSON or its summary lines."""
    if as_json:
        return json_out(res.to_json())
    echo(render.push_lines(res))


@contextmanager
def progress(enabled: bool):
    """A transfer progress bar (or None when `enabled` is false), yielding its callback."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "push", BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task("push", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@dataclass(frozen=True)
class StatusPage:
    """What `orch status` shows: the report, the runs picked from it, how many finished runs
    were left out (`older`), whether the runs were named (`detail`: a failed run's log tail)
    and the sharded runs among them."""

    report: StatusReport
    shown: list[RunStatus]
    older: int = 0
    detail: bool = True
    parents: list[ParentStatus] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """3 when a host asked did not answer, else 0."""
        return self.report.exit_code


def show(result: Outcome, as_json: bool) -> None:
    """Print a command's result: its JSON with `--json`, else its text (from `render`)."""
    from .doctor import DoctorReport
    from .fetch import FetchReport
    from .start import StartResult

    if isinstance(result, StatusPage):
        show_status(result.shown, as_json, result.report.unreachable, result.detail)
        if not as_json:
            echo(render.parent_lines(result.parents))
            echo([render.older_line(result.older)] if result.older else [])
    elif as_json:
        json_out(result.to_json())  # type: ignore[attr-defined]
    elif isinstance(result, DoctorReport):
        table(render.doctor_table(result))
    elif isinstance(result, FetchReport):
        echo(render.fetch_lines(result.results) + render.outputs_lines(result.outputs))
    elif isinstance(result, StartResult) and result.followed:  # its start was said before the log
        show_status(result.finals, False)
        echo(render.parent_lines(result.parents))
    elif isinstance(result, StartResult):
        echo(render.start_lines(result))
        echo(render.sharded_error_lines(result.sharded) if result.sharded else [], err=True)


def show_status(
    statuses: list[RunStatus],
    as_json: bool,
    unreachable: dict[str, str] | None = None,
    detail: bool = True,
) -> None:
    """Runs as JSON or a table with notes (`detail`: a failed run's log tail, else one line);
    hosts that did not answer on stderr."""
    unreachable = unreachable or {}
    if as_json:
        json_out([s.to_json() for s in statuses])
    elif not statuses:
        click.echo(render.no_runs_line(unreachable))
    else:
        table(render.status_table(statuses))
        echo_wrapped(render.status_notes(statuses, detail))
    echo(render.unreachable_lines(unreachable), err=True)


def follow(state: State, records: list, lines: int, follow: bool = True, reattach: str = ""):
    """Stream the runs' logs to stdout (until they end with `follow`; several side by side, see
    `follow.Follow`); their final statuses. Ctrl-C stops following only: one line says the
    jobs keep running and how to re-attach (`orch logs REATTACH --follow`), exit 130."""
    from .errors import EXIT_INTERRUPTED
    from .follow import Follow

    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    def warn(msg: str) -> None:
        click.echo(f"orch: {msg}", err=True)

    job = Follow(state.config(), records, lines, write, warn, follow, state.hosts())
    try:
        return job.run()
    except KeyboardInterrupt:
        job.stop()
        reattach = reattach or records[0].run_id
        where = ", ".join(dict.fromkeys(r.host for r in records))
        click.echo(
            f"orch: stopped following; {reattach} keeps running on {where}; "
            f"re-attach with `orch logs {reattach} --follow`",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
