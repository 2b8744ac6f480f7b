"""The output side of the `orch` command line: global state, the error-to-exit-code mapping,
and writing what `render` produced to the terminal (rich tables on a terminal, plain text
otherwise), the push progress bar and a followed log."""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import config as config_mod
from . import render
from .errors import OrchError, exit_code_for, message_for

if TYPE_CHECKING:
    from .hosts import Hosts


@dataclass
class State:
    """Global options shared by every command, and what a command loads once: orch.yaml and
    its hosts (one connection per host for the whole command, closed by `close`)."""

    config_path: Path | None
    verbose: bool
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


class OrchGroup(click.Group):
    """A click group that hands `OrchError` and Ctrl-C to `report` (the single handler)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (OrchError, KeyboardInterrupt) as exc:
            state = ctx.obj if isinstance(ctx.obj, State) else None
            ctx.exit(report(exc, state is not None and state.verbose))
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


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

    out = Table(title=table.title, show_lines=False)
    for c in table.columns:
        out.add_column(c)
    for r in table.rows:
        out.add_row(*r)
    Console(highlight=False).print(out)


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


def show_status(statuses, as_json: bool, unreachable: dict[str, str] | None = None) -> None:
    """Runs as JSON or a table with notes; hosts that did not answer on stderr."""
    unreachable = unreachable or {}
    if as_json:
        json_out([s.to_json() for s in statuses])
    elif not statuses:
        click.echo(render.no_runs_line(unreachable))
    else:
        table(render.status_table(statuses))
        echo(render.status_notes(statuses))
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
