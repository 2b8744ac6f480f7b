"""The `orch` command line: each command parses, calls one library function, renders the result
(`render.py` makes the text, `console.py` writes it and maps errors to exit codes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import render
from .console import (
    OrchGroup,
    State,
    StatusPage,
    connected,
    echo,
    json_out,
    progress,
    report,
    show,
    show_push,
    table,
)
from .console import (
    follow as follow_log,
)
from .errors import ConfigError, OrchError

if TYPE_CHECKING:
    from .doctor import DoctorReport
    from .start import StartResult

host_option = click.option(
    "--host", "host_name", help="Host from orch.yaml, ~/.ssh/config or `local`."
)


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """Tell the group that shows the command's result (`console.OrchGroup`) to print JSON."""
    if value and isinstance(ctx.obj, State):
        ctx.obj.as_json = True
    return value


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts.", callback=_json_flag
)


@click.group(cls=OrchGroup)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Path of orch.yaml.")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="orch")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """Run OCR evaluations on SSH GPU hosts and publish the results.

    Example: orch run quickwin --host gpu1 --follow
    """
    ctx.obj = State(config_path=config_path, verbose=verbose)


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing orch.yaml.")
def init(force: bool) -> None:
    """Write orch.yaml, playbooks/example.yaml and .gitignore entries here.

    Example: orch init
    """
    from .project import init_project

    res = init_project(Path.cwd(), force)
    for name in res.written:
        click.echo(f"wrote {name}")
    for name in res.kept:
        click.echo(f"kept {name}")


@cli.group()
def hosts() -> None:
    """List hosts and manage their trusted keys.

    Example: orch hosts list; orch hosts trust gpu1
    """


@hosts.command("list")
@json_option
@click.pass_obj
def hosts_list(state: State, as_json: bool) -> None:
    """List hosts from orch.yaml, the built-in `local` and ~/.ssh/config aliases.

    Example: orch hosts list
    """
    from .hosts import list_hosts

    entries = list_hosts(state.hosts())
    if as_json:
        return json_out([e.to_json() for e in entries])
    table(render.hosts_table(entries))


@hosts.command("trust")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Trust without asking (for scripts).")
@click.option("--replace", is_flag=True, help="Replace a CHANGED key (host was reinstalled).")
@click.pass_obj
def hosts_trust(state: State, name: str, yes: bool, replace: bool) -> None:
    """Show a host's key fingerprint and record it in known_hosts after confirmation.

    Example: orch hosts trust gpu1
    """
    from .transport import SSHHost

    cfg = state.hosts().host(name)
    if cfg.is_local:
        raise OrchError("the local host needs no key")

    def confirm(line: str) -> bool:
        click.echo(f"{name}: {line}")
        if not yes and not sys.stdin.isatty():
            raise ConfigError(
                f"{name}: no terminal to confirm the key on; if the fingerprint above is the "
                f"host's, run `orch hosts trust {name} --yes`"
            )
        return yes or click.confirm("Trust this key?", default=False)

    with SSHHost(cfg) as host:
        click.echo(host.trust(confirm, replace=replace))


@cli.command()
@host_option
@json_option
@click.pass_obj
def doctor(state: State, host_name: str | None, as_json: bool) -> DoctorReport:
    """Check that a host can run the worker: SSH, tmux, python, torch, GPU, disk, model files.

    Example: orch doctor --host gpu1
    """
    from .doctor import DoctorReport, run_doctor

    with connected(state, host_name) as (cfg, host):
        return DoctorReport(host.name, run_doctor(cfg, host))


@cli.command()
@host_option
@click.option("--dry-run", is_flag=True, help="List what would be sent and deleted.")
@click.option("--watch", is_flag=True, help="Push again whenever a pushed file changes.")
@json_option
@click.pass_obj
def push(state: State, host_name: str | None, dry_run: bool, watch: bool, as_json: bool) -> None:
    """Send the project to <remote_dir>/code (orch's worker beside it), only what changed.

    Example: orch push --host gpu1 --dry-run
    """
    from . import sync

    with connected(state, host_name) as (cfg, host):
        if watch:
            if dry_run:
                raise click.UsageError("--watch and --dry-run do not go together")
            click.echo(f"watching {cfg.root} (Ctrl-C to stop)")
            return sync.watch(cfg, host, lambda r: show_push(r, as_json))
        with progress(sys.stdout.isatty() and not as_json and not dry_run) as on_progress:
            res = sync.push(cfg, host, dry_run=dry_run, on_progress=on_progress)
    show_push(res, as_json)


@cli.command()
@host_option
@click.pass_obj
def setup(state: State, host_name: str | None) -> None:
    """Push, then create or update <remote_dir>/venv with the worker's packages.

    Example: orch setup --host gpu1
    """
    from . import envsetup, sync

    with connected(state, host_name) as (cfg, host):
        show_push(sync.push(cfg, host), False)
        res = envsetup.setup_env(host)
    click.echo(render.setup_line(res))


@cli.command()
@click.argument("playbook", required=False)
@click.option(
    "--host",
    "host_name",
    help="Host from orch.yaml, ~/.ssh/config or `local`; `a,b` or a group: one shard per host.",
)
@click.option("--shards", type=click.IntRange(1), help="Shards as a Slurm job array (one host).")
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN",
    help="Start a stopped RUN again in its folder, continuing from its predictions.",
)
@click.option("--shard", type=click.IntRange(0), help="With --resume PARENT: the shard to run.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a playbook setting (repeatable), e.g. data.n_samples=20.",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Stream the log (shards side by side, lines prefixed [host/shard]); exit with the "
    "run's state. Ctrl-C stops following only.",
)
@json_option
@click.option("--allow-concurrent", is_flag=True, help="Start even if an orch job is running.")
@click.option("--queue", is_flag=True, help="On a busy host, wait there for its jobs to end.")
@click.option(
    "--after",
    metavar="RUN",
    help="Queue on the host behind RUN (or @latest:PLAYBOOK); start only if it succeeds.",
)
@click.pass_obj
def run(
    state: State,
    playbook: str | None,
    host_name: str | None,
    shards: int | None,
    resume_id: str | None,
    shard: int | None,
    overrides: tuple[str, ...],
    follow: bool,
    as_json: bool,
    allow_concurrent: bool,
    queue: bool,
    after: str | None,
) -> StartResult:
    """Push, then start PLAYBOOK on the host (tmux session, or Slurm job on a cluster).

    \b
    Example: orch run quickwin --host gpu1 --set data.n_samples=20 --follow
    Example: orch run --resume quickwin-20261124-101200-ab12 (continue a killed run)
    Example: orch run validation --host gpu1,gpu2; orch run --resume RUN --shard 1 --host gpu3
    Example: orch run eval --host gpu1 --after @latest:train (starts once train succeeded)
    """
    from dataclasses import replace

    from .shards import combine, started_records
    from .start import RunRequest, start_run

    if follow and as_json:
        raise click.UsageError("--json and --follow do not go together (see `orch status --json`)")
    args = (playbook, host_name, overrides, shards, resume_id, shard, follow, allow_concurrent)
    req = RunRequest(*args, queue, after)
    pushed: list = []
    on_push = pushed.append if as_json else lambda r: show_push(r, False)
    started = start_run(state.config(), req, on_push, state.hosts())
    started = replace(started, pushed=[p.to_json() for p in pushed])
    if not follow:
        return started
    echo(render.start_lines(started))  # said before the log; the final status follows it
    sharded = started.sharded
    if sharded is None:
        return replace(started, followed=True, finals=follow_log(state, [started.record], 1000))
    echo(render.sharded_error_lines(sharded), err=True)
    some = len(sharded.errors) < sharded.num_shards  # else none started: nothing to follow
    records = started_records(state.config(), sharded.parent) if some else []
    finals = follow_log(state, records, 1000, reattach=sharded.parent) if records else []
    parents = combine(state.config(), finals)
    return replace(started, followed=True, finals=finals, parents=parents)


@cli.command()
@click.argument("runs", nargs=-1)
@host_option
@json_option
@click.option("--all", "-a", "show_all", is_flag=True, help="Show every finished run too.")
@click.option("--watch", "-w", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
@click.pass_obj
def status(
    state: State,
    runs: tuple[str, ...],
    host_name: str | None,
    as_json: bool,
    show_all: bool,
    watch: bool,
) -> StatusPage:
    """Show runs: state, progress, method, images/s, ETA, last update, elapsed, cost.
    Active runs and the last 5 finished ones (-a: all; --json: all); a failed run in one line
    (name it for its log's tail). RUN: an id, a unique prefix or suffix, @latest or
    @latest:PLAYBOOK. A fresh clone (no .orch/runs) asks every host of orch.yaml and records
    its runs (later: --host NAME). Exits 3 when a host asked did not answer.

    Example: orch status; orch status @latest; orch status --host gpu1 -a
    """
    import time

    from . import jobs
    from .discover import discover, fresh_clone
    from .shards import combine, split

    while True:
        cfg = state.config()
        ids, unstarted = split(cfg, runs)  # shards that never started: shown as such
        report = jobs.StatusReport([])
        if not runs and not host_name and fresh_clone(cfg):
            report = discover(cfg)  # a fresh clone: the hosts' run.json files
        elif ids or not runs:
            report = jobs.collect_status_report(cfg, ids, host_name, state.hosts())
        seen = report.runs + ([] if host_name else unstarted)
        shown, older = (seen, 0) if show_all or runs or as_json else render.recent(seen)
        page = StatusPage(report, shown, older, bool(runs), combine(cfg, shown))
        if not watch:
            return page
        if not as_json:
            click.clear()
        show(page, as_json)
        time.sleep(2)


@cli.command()
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends.")
@click.option("--lines", "-n", default=50, show_default=True, help="Lines to show first.")
@click.pass_obj
def logs(state: State, run_id: str, follow: bool, lines: int) -> None:
    """Print a run's log; -f follows it (and reconnects if the link drops). A sharded run's
    shards are shown side by side, each line prefixed [host/shard].

    Example: orch logs quickwin-20261124-101200-ab12 -f
    """
    from .shards import load_parent, started_records

    records = started_records(state.config(), run_id)
    parent = load_parent(state.config(), run_id) if len(records) > 1 else None
    follow_log(state, records, lines, follow, reattach=parent.parent if parent else "")


@cli.command()
@click.argument("run_id")
@click.option("--grace", default=10.0, show_default=True, help="Seconds between signals.")
@json_option
@click.pass_obj
def cancel(state: State, run_id: str, grace: float, as_json: bool) -> None:
    """Stop a run: SIGINT, then SIGTERM, then SIGKILL after a grace period; mark it cancelled.

    Example: orch cancel quickwin-20261124-101200-ab12
    """
    from . import jobs
    from .records import find_record
    from .shards import forget_unstarted, split

    cfg = state.config()
    ids, unstarted = split(cfg, (run_id,))
    outcomes = {}
    for rid in ids:
        record = find_record(cfg, rid)
        outcomes[record.run_id] = str(jobs.cancel(cfg, record, grace, state.hosts()))
    outcomes |= {s.run_id: "not started" for s in unstarted}
    forgot = bool(unstarted) and forget_unstarted(cfg, unstarted[0].parent)
    if as_json:
        return json_out({"runs": outcomes, "parent_removed": forgot})
    echo([f"{rid}: {outcome}" for rid, outcome in outcomes.items()])
    if forgot:
        click.echo(f"{unstarted[0].parent}: no shard had started; its parent record is removed")


from . import cli_report, cli_results  # noqa: E402, F401  (register report, fetch, publish...)


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="orch")
    except OrchError as exc:  # raised outside a command (rare): the same handler
        sys.exit(report(exc, verbose=False))


from . import cli_daily  # noqa: E402, F401  (registers wait, compare)
