"""`orch report`: the self-contained HTML error-analysis page of fetched runs (registered on the
group in `cli.py`; parse, call `report.write_reports`, render)."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import cli, json_option
from .console import State, echo, json_out


@cli.command("report")
@click.argument("runs", nargs=-1)
@click.option(
    "--images",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="A labels.jsonl folder on this machine holding the run's line images, for thumbnails "
    "(default: the run's data.source when it is such a folder here).",
)
@json_option
@click.pass_obj
def report_cmd(state: State, runs: tuple[str, ...], images: Path | None, as_json: bool) -> None:
    """Write results/<run_id>/report.html for fetched runs (default: the newest run of each
    playbook): results table, plot, per-group CER, error classes and a line browser with each
    method's differences marked. One file, no network needed to view it.

    Example: orch report && xdg-open results/*/report.html
    Example: orch report quickwin-20261124-101200-ab12 --images data/lines
    """
    from .report import write_reports

    written, skipped = write_reports(state.config(), runs, images)
    echo(
        [f"orch: note: {rid}: no predictions.jsonl, no lines to show; skipped" for rid in skipped],
        err=True,
    )
    if as_json:
        return json_out([r.to_json() for r in written])
    echo(
        [
            f"{r.run_id}: wrote {r.path} ({r.lines} lines, {len(r.methods)} methods)"
            + "".join(f"; {n}" for n in r.notes)
            for r in written
        ]
    )
