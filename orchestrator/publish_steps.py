"""Carrying out a publish plan (`publish.plan_publish`), step by step, each step reported.

First every check that can fail without changing anything (`check_plan`: README edits outside
the markers, a detached HEAD or missing upstream for `--push`, the Hub token, repository, write
access and conflicting values); then write (the plan's order: plots and the pins file first,
README.md last, each atomically and keeping the file's mode, a new file getting the umask's, not
mkstemp's 0600), commit, push, upload. A step that fails stops the later ones; the result's
`exit_code` says how far publish got: 0 every step done, 1 refused before any change (raised as
PublishError), EXIT_WRITTEN, EXIT_COMMITTED, EXIT_NOT_UPLOADED.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import hub, vcs
from .config import Config
from .errors import EXIT_FAILED, PublishError
from .publish import PublishPlan, check_readme_clean, relative_link
from .records import atomic_write

EXIT_WRITTEN = 4  # README/plots written, the commit failed: nothing committed or uploaded
EXIT_COMMITTED = 5  # committed, the push failed: nothing pushed or uploaded
EXIT_NOT_UPLOADED = 6  # written, committed and pushed as asked; the Hub upload failed


@dataclass
class PublishResult:
    """What `apply_plan` did, step by step (`exit_code`: 0, or EXIT_* of the step that failed)."""

    runs: list[str]
    message: str
    commit: str | None = None
    pushed_to: str | None = None
    hub: str = "skipped"
    written: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    committing: bool = True  # False with --no-commit
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict:
        """A JSON-ready dict (`orch publish --json`)."""
        return asdict(self)


def _file_mode(path: Path) -> int:
    """The mode a rewritten file keeps (a new file: what the umask gives), never mkstemp's 0600."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write(plan: PublishPlan, result: PublishResult) -> None:
    """Write the changed files in plan order (README.md last), each whole and with its mode."""
    for path in plan.writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = plan.readme_new if path == plan.readme_path else plan.files[path]
        atomic_write(path, data, mode=_file_mode(path))
        result.written.append(str(path))


def _step(result: PublishResult, code: int, action, *args):
    """Run one step; on PublishError or OSError record it with `code` and return None."""
    try:
        return action(*args)
    except (PublishError, OSError) as exc:
        result.error, result.exit_code = str(exc), code
        return None


def check_plan(config: Config, plan: PublishPlan):
    """Everything that can fail before a change: the README, git for --push, the Hub. Returns
    (repo, prepared card or None); raises PublishError (nothing changed)."""
    options = plan.options
    repo = check_readme_clean(config, plan.readme_path, options)  # it may have changed since
    if options.commit and options.push:
        vcs.check_push(repo)
    prep = None
    if options.to_hub and config.hub:
        links = {relative_link(p, plan.readme_path.parent): r for r, p in plan.hub_files.items()}
        prep = hub.prepare_card(
            config.hub.repo_id,
            config.hub.repo_type,
            plan.tables,
            links,
            options.create_pr,
            options.overwrite,
        )
    return repo, prep


def apply_plan(config: Config, plan: PublishPlan) -> PublishResult:
    """Check, then write, commit, push and upload, in that order (see the module docstring)."""
    options = plan.options
    repo, prep = check_plan(config, plan)
    result = PublishResult(list(plan.runs), plan.message, notes=list(plan.notes))
    result.committing = options.commit
    if _step(result, EXIT_FAILED, _write, plan, result) is None and result.error:
        result.exit_code = EXIT_WRITTEN if result.written else EXIT_FAILED
        return result
    if options.commit:
        result.commit = _step(
            result, EXIT_WRITTEN, vcs.commit_only, repo, plan.commit_paths, plan.message
        )
        if result.error:
            return result
        if options.push:
            result.pushed_to = _step(result, EXIT_COMMITTED, vcs.push, repo)
            if result.error:
                return result
    if not options.to_hub:
        return result
    if prep is None:
        result.hub = "skipped: no hub.repo_id in orch.yaml"
        return result
    # the source of the card's values: the last commit that changed the published plots or
    # pins (not HEAD, so an unrelated commit does not make an identical card differ)
    sha = vcs.last_commit(repo, list(plan.files)) if options.commit else None
    card = hub.render_card(prep, plan.tables, vcs.commit_url(repo, sha) if sha else None)
    pngs = {remote: plan.pngs[path] for remote, path in plan.hub_files.items()}
    upload = _step(result, EXIT_NOT_UPLOADED, hub.upload_card, prep, card, pngs, plan.message)
    if upload is not None:
        result.uploaded = upload.files
        result.hub = upload.pull_request or upload.url or "up to date"
    return result
