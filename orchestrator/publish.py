"""The publish step: fetched results -> README table -> plot -> git commit -> model card on the Hub.

In that order, and safely: a README with the user's uncommitted edits is refused before anything
is written; only the README, the runs' result folders and the plots are committed; publishing the
same results again commits nothing; a Hub failure comes after the local commit and re-running
retries only the upload. `plan_publish` computes everything and writes nothing (`--dry-run`
prints that plan); `apply_plan` carries it out. An invalid results.json is never skipped silently.

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

from gpu_worker.schema import SchemaError, method_names, validate_results

from . import hub, plot, readme, vcs
from .config import Config
from .errors import PublishError
from .fetch import results_dir
from .names import check_name
from .records import RUN_ID_RE, atomic_write, check_run_id


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


def select_runs(config: Config, run_ids: tuple[str, ...]) -> list[FetchedRun]:
    """The named runs, or the newest run of each playbook.

    An invalid results.json is an error when it is one of the named runs or, with no run named,
    anywhere (it may be the newest run of its playbook: publishing an older one instead would be
    wrong); a named-run publish goes on past other invalid files.
    """
    loaded = load_runs(config)
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
            picked.append(by_id[rid])
        return picked
    if loaded.invalid:
        first = next(iter(loaded.invalid.values()))
        raise PublishError(first + fix + " (or name the runs to publish)")
    newest: dict[str, FetchedRun] = {}
    for r in loaded.runs:
        newest[r.playbook] = r
    if not newest:
        raise PublishError(
            f"no fetched results in {config.defaults.results_dir}/; run `orch fetch` first"
        )
    return sorted(newest.values(), key=lambda r: r.playbook)


def _relative_link(target: Path, from_dir: Path) -> str:
    import os

    return Path(os.path.relpath(target, from_dir)).as_posix()


@dataclass
class PublishResult:
    """What `apply_plan` did."""

    runs: list[str]
    message: str
    commit: str | None = None
    pushed_to: str | None = None
    hub: str = "skipped"
    written: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PublishOptions:
    """The switches of `orch publish`."""

    commit: bool = True
    to_hub: bool = True
    push: bool = False
    allow_dirty_readme: bool = False
    overwrite: bool = False
    create_pr: bool = False


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
    pngs: dict[Path, bytes]
    commit_paths: list[Path]
    writes: list[Path]  # the README and plots whose bytes change
    tables: list[readme.RunTable]
    hub_plan: hub.CardPlan | None

    @property
    def commit(self) -> bool:
        """Whether applying the plan commits."""
        return self.options.commit


def _check_readme_clean(config: Config, readme_path: Path, options: PublishOptions):
    """The repo (or None), refusing a README with uncommitted edits unless allowed."""
    repo = vcs.open_repo(config.root) if options.commit or options.to_hub else None
    if repo is not None and options.commit and not options.allow_dirty_readme:
        if readme_path.exists() and vcs.has_uncommitted_changes(repo, readme_path):
            raise PublishError(
                f"{config.defaults.readme} has uncommitted edits; commit or stash them first "
                "(or pass --allow-dirty-readme); nothing was changed"
            )
    return repo


def _tables_and_plots(
    config: Config, runs: list[FetchedRun], readme_path: Path
) -> tuple[list[readme.RunTable], dict[Path, bytes]]:
    plots_dir = results_dir(config) / "plots"
    tables, pngs = [], {}
    for r in runs:
        png_path = plots_dir / f"{r.playbook}.png"
        if png_path.resolve().parent != plots_dir.resolve():  # belt and braces: names are safe
            raise PublishError(f"{r.run_id}: plot path {png_path} leaves {plots_dir}")
        pngs[png_path] = plot.tradeoff_png(r.results, f"{r.playbook}: {r.run_id}")
        link = _relative_link(png_path, readme_path.parent)
        tables.append(readme.RunTable(r.run_id, r.playbook, r.results, link))
    return tables, pngs


def _card_plan(config: Config, tables: list[readme.RunTable], options: PublishOptions):
    if not (options.to_hub and config.hub):
        return None
    entries = [
        (m, k, round(t.results[m][k], 4))
        for t in tables
        for m in t.methods
        if t.results[m]["cer"] is not None
        for k in ("cer", "wer")
    ]
    return hub.CardPlan(config.hub.repo_id, config.hub.repo_type, entries, options.create_pr)


def plan_publish(
    config: Config, run_ids: tuple[str, ...] = (), options: PublishOptions | None = None
) -> PublishPlan:
    """Compute the README, plots, commit and Hub upload for the selected runs; write nothing."""
    options = options or PublishOptions()
    runs = select_runs(config, run_ids)
    readme_path = (config.root / config.defaults.readme).resolve()
    _check_readme_clean(config, readme_path, options)
    tables, pngs = _tables_and_plots(config, runs, readme_path)
    old = readme_path.read_text(encoding="utf-8") if readme_path.exists() else ""
    try:
        new = readme.replace_block(old, readme.render_block(tables))
    except readme.MarkerError as exc:
        raise PublishError(f"{config.defaults.readme}: {exc}") from None
    name = config.defaults.readme
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )
    return PublishPlan(
        runs=[r.run_id for r in runs],
        options=options,
        readme_path=readme_path,
        readme_old=old,
        readme_new=new,
        readme_diff=diff,
        message=readme.commit_message(tables),
        pngs=pngs,
        commit_paths=[readme_path, *pngs, *(r.path for r in runs)],
        writes=([readme_path] if new != old else [])
        + [p for p, data in pngs.items() if not p.exists() or p.read_bytes() != data],
        tables=tables,
        hub_plan=_card_plan(config, tables, options),
    )


def apply_plan(config: Config, plan: PublishPlan) -> PublishResult:
    """Write the README and plots, commit (and push) exactly those paths, then upload the card."""
    options = plan.options
    repo = _check_readme_clean(config, plan.readme_path, options)  # it may have changed since
    result = PublishResult(list(plan.runs), plan.message)
    for path in plan.writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, plan.readme_new if path == plan.readme_path else plan.pngs[path])
        result.written.append(str(path))
    if options.commit:
        result.commit = vcs.commit_only(repo, plan.commit_paths, plan.message)
        if options.push:
            result.pushed_to = vcs.push(repo)
    if not options.to_hub:
        return result
    if not config.hub:
        result.hub = "skipped: no hub.repo_id in orch.yaml"
        return result
    sha = vcs.head_sha(repo) if options.commit else None
    upload = hub.publish_card(
        config.hub.repo_id,
        config.hub.repo_type,
        plan.readme_new,
        plan.tables,
        vcs.commit_url(repo, sha) if sha else None,
        overwrite=options.overwrite,
        create_pr=options.create_pr,
        message=plan.message,
    )
    result.hub = upload.pull_request or upload.url
    return result


def publish(
    config: Config, run_ids: tuple[str, ...] = (), options: PublishOptions | None = None
) -> PublishResult:
    """Plan, then apply (see the module docstring)."""
    return apply_plan(config, plan_publish(config, run_ids, options))


@dataclass(frozen=True)
class Comparison:
    """`orch results`: one row per (run, method), and a warning per invalid results.json."""

    rows: list[dict]
    warnings: list[str]


def comparison_rows(config: Config) -> Comparison:
    """One row per (run, method) across every fetched run, for `orch results`: rates with their
    intervals, the paired ΔCER vs the run's baseline and the lines needed to detect it; an
    invalid results.json is left out and named in `warnings`."""
    rows = []
    loaded = load_runs(config)
    for r in loaded.runs:
        for m in method_names(r.results):
            body = r.results[m]
            vs = body.get("vs_baseline") or {}
            rows.append(
                {
                    "run_id": r.run_id,
                    "playbook": r.playbook,
                    "started_at": r.started_at,
                    "method": m,
                    **{k: body[k] for k in ("cer", "wer", "exact_match", "n", "failures")},
                    "time_per_image_s": body["time_per_image_s"],
                    "images_per_s": body["images_per_s"],
                    "cer_ci": body.get("cer_ci"),
                    "wer_ci": body.get("wer_ci"),
                    "baseline": vs.get("method"),
                    "delta_cer": vs.get("delta_cer"),
                    "delta_ci": vs.get("ci"),
                    "p_value": vs.get("p_value"),
                    "significant": vs.get("significant"),
                    "lines_needed": vs.get("lines_needed"),
                    "lora_path": body.get("lora_path"),
                }
            )
    return Comparison(rows, [f"{why}; left out" for why in loaded.invalid.values()])
