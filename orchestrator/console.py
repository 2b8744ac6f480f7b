"""The output side of the `orch` command line: global state, the error-to-exit-code mapping,
and writing what `render` produced to the terminal (rich tables on a terminal, plain text
otherwise), the push progress bar and a followed log."""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from . import config as config_mod
from . import render
from .errors import OrchError, exit_code_for, message_for


@dataclass
class State:
    """Global options shared by every command."""

    config_path: Path | None
    verbose: bool

    def config(self) -> config_mod.Config:
        """The loaded orch.yaml (or defaults when there is none)."""
        return config_mod.load_config(self.config_path)


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
    from .transport import open_host

    cfg = state.config()
    with open_host(cfg.host(host_name)) as host:
        yield cfg, host


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


def show_status(
    statuses, as_json: bool, unreachable: dict[str, str] | None = None, detail: bool = True
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


def follow(state: State, record, lines: int):
    """Stream the run's log to stdout until it ends; its final status (see `follow.follow_run`)."""
    from .follow import follow_run

    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    return follow_run(
        state.config(), record, lines, write, lambda msg: click.echo(f"orch: {msg}", err=True)
    )
