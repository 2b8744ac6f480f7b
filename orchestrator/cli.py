"""The `orch` command line: each command parses, calls one library function, renders the result
(`render.py` makes the text, `console.py` writes it and maps errors to exit codes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import render
from .console import (
    OrchGroup,
    State,
    connected,
    echo,
    json_out,
    progress,
    report,
    show_push,
    show_status,
    table,
)
from .console import (
    follow as follow_log,
)
from .errors import EXIT_FAILED, EXIT_UNREACHABLE, ConfigError, OrchError

host_option = click.option(
    "--host", "host_name", help="Host from orch.yaml, ~/.ssh/config or `local`."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


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
def doctor(state: State, host_name: str | None, as_json: bool) -> None:
    """Check that a host can run the worker: SSH, tmux, python, torch, GPU, disk, model files.

    Example: orch doctor --host gpu1
    """
    from .doctor import doctor_exit_code, run_doctor

    with connected(state, host_name) as (cfg, host):
        checks = run_doctor(cfg, host)
    if as_json:
        json_out({"host": host.name, "checks": [c.to_json() for c in checks]})
    else:
        table(render.doctor_table(host.name, checks))
    sys.exit(doctor_exit_code(checks))


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
    help="Queue on the host behind RUN (or latest:PLAYBOOK); start only if it succeeds.",
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
) -> None:
    """Push, then start PLAYBOOK on the host (tmux session, or Slurm job on a cluster).

    \b
    Example: orch run quickwin --host gpu1 --set data.n_samples=20 --follow
    Example: orch run --resume quickwin-20261124-101200-ab12 (continue a killed run)
    Example: orch run validation --host gpu1,gpu2; orch run --resume RUN --shard 1 --host gpu3
    Example: orch run eval --host gpu1 --after latest:train (starts once train succeeded)
    """
    from .start import RunRequest, start_run

    if follow and as_json:
        raise click.UsageError("--json and --follow do not go together (see `orch status --json`)")
    args = (playbook, host_name, overrides, shards, resume_id, shard, follow, allow_concurrent)
    req = RunRequest(*args, queue, after)
    pushed: list = []
    on_push = pushed.append if as_json else lambda r: show_push(r, False)
    started = start_run(state.config(), req, on_push, state.hosts())
    if as_json:
        json_out(started.to_json() | {"pushed": [p.to_json() for p in pushed]})
    sharded = started.sharded
    if sharded is not None:
        if not as_json:
            echo(render.sharded_start_lines(sharded))
        echo(render.sharded_error_lines(sharded), err=True)
        if not follow:
            sys.exit(EXIT_FAILED if sharded.errors else 0)
        sys.exit(_follow_parent(state, sharded))
    record = started.record
    if not as_json:
        verb = "resumed" if started.resumed else "started"
        click.echo(f"{verb} {record.run_id} on {record.host}")
    if follow:
        finals = follow_log(state, [record], 1000)
        show_status(finals, False)
        sys.exit(0 if finals and finals[0].state == "succeeded" else EXIT_FAILED)


def _follow_parent(state: State, sharded) -> int:
    """Follow a sharded run's started shards side by side; exit 0 only if every shard
    succeeded (the parent's state is the worst of its shards')."""
    from .follow import worst_state
    from .shards import combine, started_records

    some = len(sharded.errors) < sharded.num_shards  # else none started: nothing to follow
    records = started_records(state.config(), sharded.parent) if some else []
    finals = follow_log(state, records, 1000, reattach=sharded.parent) if records else []
    show_status(finals, False)
    echo(render.parent_lines(combine(state.config(), finals)))
    ok = worst_state([f.state for f in finals]) == "succeeded"
    return 0 if ok and len(finals) == sharded.num_shards else EXIT_FAILED


@cli.command()
@click.argument("runs", nargs=-1)
@host_option
@json_option
@click.option("--watch", "-w", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
@click.pass_obj
def status(
    state: State, runs: tuple[str, ...], host_name: str | None, as_json: bool, watch: bool
) -> None:
    """Show runs: state, progress, method, images/s, ETA, last update, elapsed, cost.
    Exits 3 when a host asked did not answer (its runs show their last state seen).

    Example: orch status --host gpu1
    """
    import time

    from . import jobs
    from .shards import combine, split

    while True:
        ids, unstarted = split(state.config(), runs)  # shards that never started: shown as such
        report = jobs.StatusReport([])
        if ids or not runs:
            report = jobs.collect_status_report(state.config(), ids, host_name, state.hosts())
        seen = report.runs + ([] if host_name else unstarted)
        if watch and not as_json:
            click.clear()
        show_status(seen, as_json, report.unreachable)
        if not as_json:
            echo(render.parent_lines(combine(state.config(), seen)))
        if not watch:
            break
        time.sleep(2)
    if report.unreachable:
        sys.exit(EXIT_UNREACHABLE)


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


from . import cli_results  # noqa: E402, F401  (registers fetch, forget, publish, results)


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="orch")
    except OrchError as exc:  # raised outside a command (rare): the same handler
        sys.exit(report(exc, verbose=False))
