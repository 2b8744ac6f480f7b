"""The publish step: fetched results -> README tables -> plots -> git commit -> push -> Hub card.

`plan_publish` computes everything and writes nothing (`--dry-run` prints that plan): which run
each playbook shows (`pins.py`: the published run stays until a run of at least the same n, a
named run or `--replace` takes its place), the README block, the trade-off plot of each table
and a history plot per playbook, and the order of the writes (plots and the pins file first,
README.md last). `publish_steps.py` checks everything that can fail before changing anything,
then writes, commits, pushes and uploads, each step reported, its exit code saying how far it got.

Interrupted anywhere (Ctrl-C), publish leaves a state the next publish completes: the plots and
pins file are only ever whole files, and a README whose only uncommitted change is inside the
markers (orch's own block, written last) is not "uncommitted edits": the next publish rewrites
the block and commits. Publishing the same results again writes, commits and uploads nothing.
An invalid results.json is never skipped silently. A run's `orch report` page
(results/<id>/report.html) is linked under its table when it exists; `--report` makes it first.

A results.json comes from the host, so nothing in it chooses a path: the run id (its folder),
the playbook name (the plot's file name) and the method names (README rows) must be safe names
(`names.py`), else publish stops naming the file and field; files are written only under
results/ and to the README.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_worker.contract.layout import RUN_ID_RE
from gpu_worker.contract.schema import SchemaError, method_names, validate_results

from . import hub, markers, pins, plot, readme, vcs
from .config import Config
from .errors import PublishError
from .fetch import results_dir
from .names import check_name
from .records import check_run_id, load_records

if TYPE_CHECKING:
    from . import publish_steps


@dataclass(frozen=True)
class FetchedRun:
    """A run folder under results/ with its validated results."""

    run_id: str
    playbook: str
    path: Path
    results: dict
    started_at: float


@dataclass(frozen=True)
class LoadedRuns:
    """Every fetched run with a valid results.json, and the results.json files that are not."""

    runs: list[FetchedRun]
    invalid: dict[str, str]  # run folder name -> "results/<id>/results.json is invalid (...)"


def load_runs(config: Config) -> LoadedRuns:
    """Every fetched run with a valid results.json, oldest first; invalid ones are named."""
    runs, invalid = [], {}
    for res_path in sorted(results_dir(config).glob("*/results.json")):
        try:
            doc = validate_results(json.loads(res_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, SchemaError, UnicodeDecodeError) as exc:
            where = f"{config.defaults.results_dir}/{res_path.parent.name}/results.json"
            invalid[res_path.parent.name] = f"{where} is invalid ({exc})"
            continue
        if (doc.get("run", {}).get("data") or {}).get("num_shards", 1) > 1:
            continue  # one shard of a sharded run: its merged parent (results/<parent>/) counts
        runs.append(_fetched_run(config, res_path, doc))
    return LoadedRuns(sorted(runs, key=lambda r: (r.started_at, r.run_id)), invalid)


def _fetched_run(config: Config, res_path: Path, doc: dict) -> FetchedRun:
    """A FetchedRun whose run id, playbook and method names are safe (see the module doc)."""
    folder = res_path.parent
    where = f"{config.defaults.results_dir}/{folder.name}/results.json"
    if not RUN_ID_RE.match(folder.name):
        raise PublishError(
            f"{config.defaults.results_dir}/{folder.name}: not a run id (lowercase letters, "
            "digits, - _ .); move it out of the results folder; nothing was written"
        )
    prov = doc.get("run", {})
    playbook = prov.get("playbook") or folder.name.rsplit("-", 3)[0]
    check_name(playbook, f"{where}: run.playbook", PublishError)
    for method in method_names(doc):
        check_name(method, f"{where}: method", PublishError)
    started = prov.get("started_at")
    if isinstance(started, bool) or not isinstance(started, (int, float)):
        started = res_path.stat().st_mtime
    return FetchedRun(folder.name, playbook, folder, doc, float(started))


def _select(config: Config, loaded: LoadedRuns, run_ids: tuple[str, ...]) -> list[FetchedRun]:
    """The named runs, or the newest run of each playbook.

    An invalid results.json is an error when it is one of the named runs or, with no run named,
    anywhere (it may be the newest run of its playbook: publishing an older one instead would be
    wrong); a named-run publish goes on past other invalid files.
    """
    fix = "; fix it, move it out of the results folder or re-fetch it; nothing was written"
    if run_ids:
        by_id = {r.run_id: r for r in loaded.runs}
        picked = []
        for rid in run_ids:
            check_run_id(rid)  # refuses ids that would escape results/
            if rid in loaded.invalid:
                raise PublishError(loaded.invalid[rid] + fix)
            if rid not in by_id:
                raise PublishError(
                    f"no fetched results for {rid} in {config.defaults.results_dir}/; "
                    "run `orch fetch` first"
                )
            if by_id[rid] not in picked:
                picked.append(by_id[rid])
        return picked
    if loaded.invalid:
        first = next(iter(loaded.invalid.values()))
        raise PublishError(first + fix + " (or name the runs to publish)")
    newest = {r.playbook: r for r in loaded.runs}
    if not newest:
        raise PublishError(
            f"no fetched results in {config.defaults.results_dir}/; run `orch fetch` first"
        )
    return sorted(newest.values(), key=lambda r: r.playbook)


def unfetched_runs(config: Config) -> list[str]:
    """`run (state)` of each local run record not fetched and not known to have failed, been
    cancelled or lost: publish would show an older run in its place."""
    have = results_dir(config)
    out = {}
    for rec in load_records(config):
        rid = rec.parent or rec.run_id
        if rec.fetched or (have / rid).exists() or rec.state in ("failed", "cancelled", "lost"):
            continue
        seen = "" if rec.state == "succeeded" else " when last seen"
        out.setdefault(rid, f"{rid} ({rec.state}{seen})")
    return list(out.values())


def fetch_first(config: Config) -> list:
    """`--fetch`: fetch every finished run not yet fetched and merge sharded ones."""
    from .fetch import fetch
    from .merge import merge_fetched

    return fetch(config) + merge_fetched(config)


def relative_link(target: Path, from_dir: Path) -> str:
    import os

    return Path(os.path.relpath(target, from_dir)).as_posix()


@dataclass(frozen=True)
class PublishOptions:
    """The switches of `orch publish`."""

    commit: bool = True
    to_hub: bool = True
    push: bool = False
    allow_dirty_readme: bool = False
    overwrite: bool = False
    create_pr: bool = False
    replace: bool = False
    report: bool = False  # build each shown run's `orch report` page (and link it)


@dataclass(frozen=True)
class PublishPlan:
    """Everything publish would do, computed without writing anything (`--dry-run` prints it)."""

    runs: list[str]
    options: PublishOptions
    readme_path: Path
    readme_old: str
    readme_new: str
    readme_diff: str
    message: str
    pngs: dict[Path, bytes]  # every plot the README links (the pins file too: see files)
    commit_paths: list[Path]
    writes: list[Path]  # the files whose bytes change, in write order: README.md last
    tables: list[readme.RunTable]
    hub_plan: hub.CardPlan | None
    notes: list[str] = field(default_factory=list)
    files: dict[Path, bytes] = field(default_factory=dict)  # everything to write but README
    hub_files: dict[str, Path] = field(default_factory=dict)  # path in the Hub repo -> plot

    @property
    def commit(self) -> bool:
        """Whether applying the plan commits."""
        return self.options.commit

    def to_json(self) -> dict:
        """A JSON-ready dict (`orch publish --dry-run --json`)."""
        card = self.hub_plan
        return {
            "runs": self.runs,
            "writes": [str(p) for p in self.writes],
            "readme_diff": self.readme_diff,
            "commit_message": self.message if self.commit else None,
            "hub": None
            if card is None
            else {"repo_id": card.repo_id, "create_pr": card.create_pr, "entries": card.entries},
            "notes": self.notes,
        }


def _outside_block(text: str) -> str | None:
    """`text` without what lies between the markers (None when they are broken)."""
    try:
        return markers.replace_block(text, "") if text else text
    except markers.MarkerError:
        return None


def check_readme_clean(config: Config, readme_path: Path, options: PublishOptions):
    """The repo (or None), refusing a README with uncommitted edits outside the markers (orch's
    own block, perhaps from an interrupted publish, is not the user's) unless allowed."""
    repo = vcs.open_repo(config.root) if options.commit or options.to_hub else None
    if repo is None or not options.commit or options.allow_dirty_readme:
        return repo
    if readme_path.exists() and vcs.has_uncommitted_changes(repo, readme_path):
        now = readme_path.read_text(encoding="utf-8")
        before = vcs.committed_text(repo, readme_path)
        if (
            before is None
            or _outside_block(now) is None
            or _outside_block(now) != _outside_block(before)
        ):
            raise PublishError(
                f"{config.defaults.readme} has uncommitted edits; commit or stash them first "
                "(or pass --allow-dirty-readme); nothing was changed"
            )
    return repo


def _tables_and_plots(
    config: Config, loaded: LoadedRuns, chosen: pins.Headline, readme_path: Path
) -> tuple[list[readme.RunTable], dict[Path, bytes]]:
    """A table per pinned run (a trade-off plot each) and a history plot per playbook."""
    plots_dir = results_dir(config) / "plots"
    by_id = {r.run_id: r for r in loaded.runs}
    tables, pngs = [], {}
    for pb, ids in chosen.pins.items():
        several = len(ids) > 1
        history = plots_dir / "history" / f"{pb}.png"
        runs = [r for r in loaded.runs if r.playbook == pb]
        pngs[history] = plot.history_png(
            [(r.run_id, r.started_at, r.results) for r in runs], pb, set(ids)
        )
        for i, rid in enumerate(ids):
            r = by_id[rid]
            png = plots_dir / "runs" / f"{rid}.png" if several else plots_dir / f"{pb}.png"
            pngs[png] = plot.tradeoff_png(r.results, f"{pb}: {rid}")
            last = i == len(ids) - 1
            tables.append(
                readme.RunTable(
                    rid,
                    pb,
                    r.results,
                    relative_link(png, readme_path.parent),
                    label=rid if several else None,
                    history_link=relative_link(history, readme_path.parent) if last else None,
                )
            )
    for png in pngs:
        if plots_dir.resolve() not in png.resolve().parents:  # belt and braces: names are safe
            raise PublishError(f"plot path {png} leaves {plots_dir}")
    return tables, pngs


def _card_plan(config: Config, tables: list[readme.RunTable], options: PublishOptions):
    if not (options.to_hub and config.hub):
        return None
    entries = [
        (f"{t.key}/{m}", k, round(t.results[m][k], 4))
        for t in tables
        for m in t.methods
        if t.results[m]["cer"] is not None
        for k in ("cer", "wer")
    ]
    return hub.CardPlan(config.hub.repo_id, config.hub.repo_type, entries, options.create_pr)


def plan_publish(
    config: Config, run_ids: tuple[str, ...] = (), options: PublishOptions | None = None
) -> PublishPlan:
    """Compute the README, plots, pins, commit and Hub upload for the selected runs; write
    nothing."""
    options = options or PublishOptions()
    loaded = load_runs(config)
    named = _select(config, loaded, run_ids)  # the checks of invalid files and named runs
    state_path = results_dir(config) / "plots" / pins.STATE_FILE
    chosen = pins.choose(
        loaded.runs, pins.load_pins(state_path), named if run_ids else [], options.replace
    )
    readme_path = (config.root / config.defaults.readme).resolve()
    check_readme_clean(config, readme_path, options)
    tables, pngs = _tables_and_plots(config, loaded, chosen, readme_path)
    from .report import linked_reports

    tables, reports = linked_reports(config, loaded.runs, tables, options.report, readme_path)
    old = readme_path.read_text(encoding="utf-8") if readme_path.exists() else ""
    try:
        new = markers.replace_block(old, readme.render_block(tables))
    except markers.MarkerError as exc:
        raise PublishError(f"{config.defaults.readme}: {exc}") from None
    name = config.defaults.readme
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )
    files = {**pngs, **reports, state_path: chosen.to_json().encode()}
    changed = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    run_paths = [results_dir(config) / t.run_id for t in tables]
    return PublishPlan(
        runs=[t.run_id for t in tables],
        options=options,
        readme_path=readme_path,
        readme_old=old,
        readme_new=new,
        readme_diff=diff,
        message=readme.commit_message(tables),
        pngs=pngs,
        commit_paths=[readme_path, *files, *run_paths],
        writes=changed + ([readme_path] if new != old else []),
        tables=tables,
        hub_plan=_card_plan(config, tables, options),
        notes=chosen.notes,
        files=files,
        hub_files={
            f"{hub.PLOTS}/{p.relative_to(results_dir(config) / 'plots').as_posix()}": p
            for p in pngs
        },
    )


def publish(
    config: Config, run_ids: tuple[str, ...] = (), options: PublishOptions | None = None
) -> publish_steps.PublishResult:
    """Plan, then apply (see the module docstring)."""
    from .publish_steps import apply_plan

    return apply_plan(config, plan_publish(config, run_ids, options))
