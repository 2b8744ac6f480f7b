"""The `orch` commands that bring results home and publish them: `fetch`, `forget`, `publish`,
`results` (registered on the group in `cli.py`; same rules: parse, call one library function,
render)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from . import render
from .cli import cli, json_option
from .console import State, echo, json_out, table

if TYPE_CHECKING:
    from .fetch import FetchReport


@cli.command()
@click.argument("runs", nargs=-1)
@click.option(
    "--outputs",
    "outputs",
    is_flag=False,
    flag_value="*",
    default=None,
    metavar="[GLOB]",
    help="Also bring back the named runs' playbook `outputs:` (matching GLOB) into "
    "results/<run_id>/outputs/; resumes where it stopped.",
)
@json_option
@click.pass_obj
def fetch(state: State, runs: tuple[str, ...], outputs: str | None, as_json: bool) -> FetchReport:
    """Copy finished runs' results, predictions, log and playbook into results/<run_id>/
    (RUN: an id, a unique prefix or suffix, @latest or @latest:PLAYBOOK).

    \b
    Example: orch fetch
    Example: orch fetch train-20261124-101200-ab12 --outputs 'checkpoints/checkpoint-500/*'
    """
    from .artifacts import fetch_named
    from .fetch import FetchReport, FetchResult
    from .fetch import fetch as fetch_runs
    from .merge import merge_fetched
    from .runrefs import latest_ids
    from .shards import split
    from .states import FetchOutcome

    if outputs is not None and not runs:
        raise click.UsageError("--outputs needs the RUN whose outputs to fetch")
    runs = latest_ids(state.config(), runs)
    ids, unstarted = split(state.config(), runs) if runs else ((), [])
    results = fetch_runs(state.config(), ids, state.hosts()) if ids or not runs else []
    results += [
        FetchResult(s.run_id, FetchOutcome.NOT_FINAL, s.state, error=s.note) for s in unstarted
    ]
    results += merge_fetched(state.config(), runs)
    got = fetch_named(state.config(), runs, outputs) if outputs is not None else []
    return FetchReport(results, got)


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.pass_obj
def forget(state: State, runs: tuple[str, ...]) -> None:
    """Drop local run records (a run whose folder vanished from its host); the host and
    results/ are not touched.

    Example: orch forget quickwin-20261124-101200-ab12
    """
    from .records import forget_record

    for rid in runs:
        click.echo(f"forgot {forget_record(state.config(), rid)}")


@cli.command()
@click.argument("runs", nargs=-1)
@click.option("--no-commit", is_flag=True, help="Update README and plots, do not commit.")
@click.option("--no-hub", is_flag=True, help="Do not upload the model card.")
@click.option("--push", "git_push", is_flag=True, help="Push the branch to its upstream.")
@click.option("--dry-run", is_flag=True, help="Show the diff, message and upload plan only.")
@click.option("--allow-dirty-readme", is_flag=True, help="Publish over uncommitted README edits.")
@click.option("--overwrite", is_flag=True, help="Replace values already published on the Hub.")
@click.option("--create-pr", is_flag=True, help="Open a pull request on the Hub instead.")
@click.option("--replace", is_flag=True, help="Show each playbook's newest run even if smaller.")
@click.option("--fetch", "fetch_first", is_flag=True, help="Fetch finished runs first.")
@click.option(
    "--report",
    "with_report",
    is_flag=True,
    help="Also write each shown run's `orch report` page and link it under its table "
    "(a page already made is linked without this).",
)
@click.option(
    "--adapter",
    metavar="RUN:checkpoint-N",
    help="Upload this fetched LoRA adapter with its card to the Hub repo (nothing else).",
)
@json_option
@click.pass_obj
def publish(
    state: State,
    runs: tuple[str, ...],
    no_commit: bool,
    no_hub: bool,
    git_push: bool,
    dry_run: bool,
    allow_dirty_readme: bool,
    overwrite: bool,
    create_pr: bool,
    replace: bool,
    fetch_first: bool,
    with_report: bool,
    as_json: bool,
    adapter: str | None,
) -> None:
    """Results tables into README.md, plots, git commit, push, model card on the Hub.

    RUN: a fetched run's id, a unique prefix or suffix, @latest or @latest:PLAYBOOK; none:
    each playbook's pinned or newest run.

    Exit codes: 0 done; 1 refused before any change; 4 written, not committed; 5 committed,
    not pushed; 6 committed (and pushed), not uploaded.

    Example: orch fetch && orch publish --push
    """
    from . import publish as pub
    from .publish_steps import apply_plan
    from .runrefs import fetched_ids

    cfg = state.config()
    runs = fetched_ids(cfg, runs)
    if adapter:
        from .adapters import publish_adapter

        url = publish_adapter(cfg, adapter, create_pr)
        return echo([f"adapter published: {url}"])
    if fetch_first:
        echo(render.fetch_lines(pub.fetch_first(cfg)), err=as_json)
    unfetched = pub.unfetched_runs(cfg)
    if unfetched:
        click.echo(
            f"orch: warning: runs not fetched: {', '.join(unfetched)}; run `orch fetch` "
            "(or pass --fetch) to publish them",
            err=True,
        )
    options = pub.PublishOptions(
        commit=not no_commit,
        to_hub=not no_hub,
        push=git_push,
        allow_dirty_readme=allow_dirty_readme,
        overwrite=overwrite,
        create_pr=create_pr,
        replace=replace,
        report=with_report,
    )
    plan = pub.plan_publish(cfg, runs, options)
    if dry_run:
        return json_out(plan.to_json()) if as_json else echo(render.publish_plan_lines(plan))
    res = apply_plan(cfg, plan)
    if as_json:
        json_out(res.to_json())
    else:
        echo(render.publish_lines(res))
    failed = render.publish_error_line(res)
    if failed:
        click.echo(failed, err=True)
    sys.exit(res.exit_code)


@cli.command()
@click.option("--playbook", help="Only runs of this playbook.")
@click.option("--method", help="Only this method's rows.")
@click.option("--since", metavar="DATE", help="Only runs started since (2026-11-24, or 3d, 12h).")
@json_option
@click.pass_obj
def results(
    state: State, playbook: str | None, method: str | None, since: str | None, as_json: bool
) -> None:
    """Compare every fetched run: one row per run and method, oldest first, with its cost per
    1,000 lines (the host's hourly_rate) and the `--set` overrides it ran with.

    Example: orch results --playbook quickwin --method beam_search --since 7d
    """
    from .comparison import Filters, parse_since, results_rows

    filters = Filters(playbook, method, parse_since(since) if since else None)
    comparison = results_rows(state.config(), filters)
    echo([f"orch: warning: {w}" for w in comparison.warnings], err=True)
    if as_json:
        return json_out([row.to_json() for row in comparison.rows])
    if not comparison.rows:
        return click.echo(
            "no fetched results; run `orch fetch`" if filters == Filters() else "no results match"
        )
    from .render_results import results_table

    table(results_table(comparison.rows))
