"""The `orch` commands of daily use around runs: `wait` and `compare` (registered on the group in
`cli.py`; same rules: parse, call one library function, render)."""

from __future__ import annotations

import sys

import click

from . import render_daily as render
from .cli import cli, json_option
from .console import State, echo, json_out, table


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--interval",
    type=click.FloatRange(0.2),
    default=30.0,
    show_default=True,
    help="Seconds between looks at the hosts.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    help="Give up after this many seconds (exit 124; 3 if a host did not answer).",
)
@json_option
@click.pass_obj
def wait(
    state: State, runs: tuple[str, ...], interval: float, timeout: float | None, as_json: bool
) -> None:
    """Block until the RUNs end; exit 0 when all succeeded, 1 when any failed, was lost or
    cancelled (a sharded run's id waits for all its shards).

    \b
    Example: orch wait quickwin-20261124-101200-ab12 && orch fetch
    Example: orch wait @latest:train --interval 60 --timeout 14400
    """
    from .waiting import wait_for

    def changed(s) -> None:
        if not as_json:
            click.echo(render.wait_line(s))

    def down(name: str, why: str) -> None:
        echo(render.unreachable_lines({name: why + "; still waiting"}), err=True)

    outcome = wait_for(state.config(), runs, interval, timeout, changed, down)
    if as_json:
        json_out(outcome.to_json())
    elif outcome.timed_out:
        click.echo(render.wait_timeout_line(outcome, timeout or 0), err=True)
    sys.exit(outcome.exit_code)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--method", help="Compare only this method (default: every method both have).")
@json_option
@click.pass_obj
def compare(state: State, run_a: str, run_b: str, method: str | None, as_json: bool) -> None:
    """Paired ΔCER of two fetched runs (B - A) with its 95% interval and p-value, on the
    lines both scored (matched by dataset index).

    Example: orch compare quickwin-20261124-101200-ab12 quickwin-20261125-090000-cd34
    """
    from .compare import compare_runs

    res = compare_runs(state.config(), run_a, run_b, method)
    if as_json:
        return json_out(res.to_json())
    table(render.compare_table(res))
    echo(render.compare_notes(res))
