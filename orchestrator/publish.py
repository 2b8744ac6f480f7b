"""The publish step: fetched results -> README table -> plot -> git commit -> model card on the Hub.

In that order, and safely: a README with the user's uncommitted edits is refused before anything
is written; only the README, the runs' result folders and the plots are committed; publishing the
same results again commits nothing; a Hub failure comes after the local commit and re-running
retries only the upload. `--dry-run` computes everything and writes nothing.

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

from gpu_worker.schema import SchemaError, validate_results

from . import hub, plot, readme, vcs
from .config import Config
from .errors import PublishError
from .fetch import results_dir
from .jobs import RUN_ID_RE, atomic_write, check_run_id
from .names import check_name


@dataclass(frozen=True)
class FetchedRun:
    """A run folder under results/ with its validated results."""

    run_id: str
    playbook: str
    path: Path
    results: dict
    started_at: float


@dataclass
class PublishResult:
    """What publish did or, with --dry-run, would do."""

    runs: list[str]
    readme_diff: str
    message: str
    commit: str | None = None
    pushed_to: str | None = None
    hub: str = "skipped"
    hub_plan: hub.CardPlan | None = None
    written: list[str] = field(default_factory=list)


def load_runs(config: Config) -> list[FetchedRun]:
    """Every fetched run with a valid results.json, oldest first."""
    runs = []
    for res_path in sorted(results_dir(config).glob("*/results.json")):
        try:
            doc = validate_results(json.loads(res_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, SchemaError, UnicodeDecodeError):
            continue
        if (doc.get("run", {}).get("data") or {}).get("num_shards", 1) > 1:
            continue  # one shard of a sharded run: its merged parent (results/<parent>/) counts
        runs.append(_fetched_run(config, res_path, doc))
    return sorted(runs, key=lambda r: (r.started_at, r.run_id))


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
    for method in doc:
        if method != "run":
            check_name(method, f"{where}: method", PublishError)
    started = prov.get("started_at")
    if isinstance(started, bool) or not isinstance(started, (int, float)):
        started = res_path.stat().st_mtime
    return FetchedRun(folder.name, playbook, folder, doc, float(started))


def select_runs(config: Config, run_ids: tuple[str, ...]) -> list[FetchedRun]:
    """The named runs, or the newest run of each playbook."""
    runs = load_runs(config)
    if run_ids:
        by_id = {r.run_id: r for r in runs}
        picked = []
        for rid in run_ids:
            check_run_id(rid)  # refuses ids that would escape results/
            if rid not in by_id:
                raise PublishError(
                    f"no fetched results for {rid} in {config.defaults.results_dir}/; "
                    "run `orch fetch` first"
                )
            picked.append(by_id[rid])
        return picked
    newest: dict[str, FetchedRun] = {}
    for r in runs:
        newest[r.playbook] = r
    if not newest:
        raise PublishError(
            f"no fetched results in {config.defaults.results_dir}/; run `orch fetch` first"
        )
    return sorted(newest.values(), key=lambda r: r.playbook)


def _relative_link(target: Path, from_dir: Path) -> str:
    import os

    return Path(os.path.relpath(target, from_dir)).as_posix()


def publish(
    config: Config,
    run_ids: tuple[str, ...] = (),
    *,
    commit: bool = True,
    to_hub: bool = True,
    push: bool = False,
    dry_run: bool = False,
    allow_dirty_readme: bool = False,
    overwrite: bool = False,
    create_pr: bool = False,
) -> PublishResult:
    """Publish the selected runs (see the module docstring)."""
    runs = select_runs(config, run_ids)
    readme_path = (config.root / config.defaults.readme).resolve()
    repo = vcs.open_repo(config.root) if commit or to_hub else None
    if repo is not None and commit and not allow_dirty_readme:
        if readme_path.exists() and vcs.has_uncommitted_changes(repo, readme_path):
            raise PublishError(
                f"{config.defaults.readme} has uncommitted edits; commit or stash them first "
                "(or pass --allow-dirty-readme); nothing was changed"
            )
    plots_dir = results_dir(config) / "plots"
    tables, pngs = [], {}
    for r in runs:
        png_path = plots_dir / f"{r.playbook}.png"
        if png_path.resolve().parent != plots_dir.resolve():  # belt and braces: names are safe
            raise PublishError(f"{r.run_id}: plot path {png_path} leaves {plots_dir}")
        pngs[png_path] = plot.tradeoff_png(r.results, f"{r.playbook}: {r.run_id}")
        link = _relative_link(png_path, readme_path.parent)
        tables.append(readme.RunTable(r.run_id, r.playbook, r.results, link))
    old = readme_path.read_text(encoding="utf-8") if readme_path.exists() else ""
    try:
        new = readme.replace_block(old, readme.render_block(tables))
    except readme.MarkerError as exc:
        raise PublishError(f"{config.defaults.readme}: {exc}") from None
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"a/{config.defaults.readme}",
            f"b/{config.defaults.readme}",
        )
    )
    result = PublishResult([r.run_id for r in runs], diff, readme.commit_message(tables))
    if to_hub and config.hub:
        result.hub_plan = hub.CardPlan(
            config.hub.repo_id,
            config.hub.repo_type,
            [
                (m, k, round(t.results[m][k], 4))
                for t in tables
                for m in t.methods
                if t.results[m]["cer"] is not None
                for k in ("cer", "wer")
            ],  # fmt: skip
            create_pr,
        )
    if dry_run:
        return result

    if new != old:
        atomic_write(readme_path, new)
        result.written.append(str(readme_path))
    for path, data in pngs.items():
        if not path.exists() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
            result.written.append(str(path))
    if commit:
        paths = [readme_path, *pngs, *(r.path for r in runs)]
        result.commit = vcs.commit_only(repo, paths, result.message)
        if push:
            result.pushed_to = vcs.push(repo)
    if to_hub:
        if not config.hub:
            result.hub = "skipped: no hub.repo_id in orch.yaml"
            return result
        sha = vcs.head_sha(repo) if commit else None
        upload = hub.publish_card(
            config.hub.repo_id,
            config.hub.repo_type,
            new,
            tables,
            vcs.commit_url(repo, sha) if sha else None,
            overwrite=overwrite,
            create_pr=create_pr,
            message=result.message,
        )
        result.hub = upload.pull_request or upload.url
    return result


def comparison_rows(config: Config) -> list[dict]:
    """One row per (run, method) across every fetched run, for `orch results`: rates with their
    intervals, the paired ΔCER vs the run's baseline and the lines needed to detect it."""
    rows = []
    for r in load_runs(config):
        for m in [k for k in r.results if k != "run"]:
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
                }
            )
    return rows
