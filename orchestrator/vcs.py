"""The only GitPython user: dirty checks, commit exactly the given paths, push.

`commit_only(paths)` commits those paths and nothing else: other staged or modified files stay
as they were (staged stays staged), and a commit is made only when the paths changed.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import PublishError


def open_repo(path: Path):
    """The git repository holding `path`, or PublishError."""
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise PublishError(f"{path} is not inside a git repository; run `git init` first") from None


def _rel(repo, path: Path) -> str:
    return str(Path(path).resolve().relative_to(Path(repo.working_tree_dir).resolve()))


def has_uncommitted_changes(repo, path: Path) -> bool:
    """True when `path` differs from HEAD (staged or not); an untracked file counts too."""
    return bool(repo.git.status("--porcelain", "--", _rel(repo, path)).strip())


def commit_only(repo, paths: list[Path], message: str) -> str | None:
    """Commit exactly `paths` (new files included); return the sha, or None when unchanged."""
    import git

    rel = [_rel(repo, p) for p in paths]
    if not repo.git.status("--porcelain", "--untracked-files=all", "--", *rel).strip():
        return None
    try:
        repo.git.add("--", *rel)
        if not repo.head.is_valid():  # first commit: --only needs a HEAD to compare against
            repo.git.commit("-m", message, "--", *rel)
        else:
            repo.git.commit("--only", "-m", message, "--", *rel)
    except git.GitCommandError as exc:
        why = (exc.stderr or "").strip().splitlines()
        raise PublishError(f"git: commit failed ({why[-1] if why else exc})") from None
    return repo.head.commit.hexsha


def head_sha(repo) -> str | None:
    """The current commit, or None in an empty repository."""
    return repo.head.commit.hexsha if repo.head.is_valid() else None


def committed_text(repo, path: Path) -> str | None:
    """`path`'s text at HEAD, or None when HEAD has no such file (or there is no HEAD)."""
    import git

    if not repo.head.is_valid():
        return None
    try:
        return repo.git.show(f"HEAD:{_rel(repo, path)}", strip_newline_in_stdout=False)
    except git.GitCommandError:
        return None


def last_commit(repo, paths: list[Path]) -> str | None:
    """The newest commit that changed any of `paths` (None when none did)."""
    if not repo.head.is_valid():
        return None
    sha = repo.git.log("-1", "--format=%H", "--", *[_rel(repo, p) for p in paths]).strip()
    return sha or None


def check_push(repo):
    """The (branch, its upstream) `push` would use; PublishError, before anything is committed,
    on a detached HEAD or a branch with no upstream."""
    if repo.head.is_detached:
        raise PublishError(
            "git: HEAD is detached, so --push has no branch to push; check out a branch "
            "(or leave out --push); nothing was changed"
        )
    branch = repo.active_branch
    tracking = branch.tracking_branch()
    if tracking is None:
        raise PublishError(
            f"git: branch {branch.name} has no upstream; run `git push -u origin {branch.name}` "
            "once (or leave out --push); nothing was changed"
        )
    return branch, tracking


def push(repo) -> str:
    """Push the current branch to its upstream; PublishError when there is none or it fails."""
    import git

    branch, tracking = check_push(repo)
    remote = repo.remote(tracking.remote_name)
    try:
        infos = remote.push(f"{branch.name}:{tracking.remote_head}")
    except git.GitCommandError as exc:
        raise PublishError(f"git: push to {remote.name} failed: {exc.stderr.strip()}") from None
    for info in infos:
        if info.flags & info.ERROR:
            raise PublishError(f"git: push to {remote.name} failed: {info.summary.strip()}")
    return f"{remote.name}/{tracking.remote_head}"


def commit_url(repo, sha: str) -> str | None:
    """A web address of commit `sha` from the `origin` remote (GitHub-style), if there is one."""
    try:
        url = repo.remote("origin").url
    except ValueError:
        return None
    m = re.match(r"^(?:git@|ssh://git@)([^:/]+)[:/](.+?)(?:\.git)?/?$", url)
    if m:
        return f"https://{m.group(1)}/{m.group(2)}/commit/{sha}"
    m = re.match(r"^https?://(?:[^@/]+@)?(.+?)(?:\.git)?/?$", url)
    return f"https://{m.group(1)}/commit/{sha}" if m else None
