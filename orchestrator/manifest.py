"""The local side of `orch push`: which files of the project are pushed (`list_files`: what git
would ship, plus `push.include`, minus `.orchignore` and orch's own files), their sha256s
(`local_manifest`), and the project's identity (`code_identity`: commit, dirty flag, content
hash). Bytecode is never listed. Git runs as a subprocess; outside a repository the folder is
walked, honouring a top-level .gitignore.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from gpu_worker.contract.layout import CodeIdentity

from .config import CONFIG_NAME, Config
from .errors import ConfigError, OrchError


class NotARepo(Exception):
    """The project is not inside a git work tree (push then walks the folders instead)."""


def _in_a_repo(root: Path) -> bool:
    return any((folder / ".git").exists() for folder in (root, *root.parents))


def _git(root: Path, *args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
    """stdout of `git -C root ARGS`. Raises `NotARepo` only when git says the folder is not a
    repository (or git is missing and no `.git` is above it); any other failure is an
    `OrchError` naming the git command and its message, never a silent fallback."""
    env = {**os.environ, "LC_ALL": "C", "LANGUAGE": ""}  # git's English message, tested below
    try:
        # bytes, decoded below: text mode would turn a `\r` inside a file name into `\n`
        raw = subprocess.run(["git", "-C", str(root), *args], capture_output=True, env=env)
    except OSError as exc:
        if not _in_a_repo(root):
            raise NotARepo from None
        raise OrchError(f"{root} is a git repository but git could not run: {exc}") from None
    res = subprocess.CompletedProcess(
        raw.args, raw.returncode, os.fsdecode(raw.stdout), raw.stderr.decode("utf-8", "replace")
    )
    if res.returncode in ok_codes:
        return res.stdout
    if "not a git repository" in res.stderr:
        raise NotARepo
    why = " | ".join(line for line in res.stderr.strip().splitlines()[-2:] if line.strip())
    raise OrchError(
        f"git {args[0]} failed in {root} (exit code {res.returncode}): {why or 'no message'}; "
        "orch push sends what git would ship, so it stops here"
    )


def _ignore_spec(root: Path, name: str):
    import pathspec

    path = root / name
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk(root: Path, top: str) -> list[str]:
    start = root / top
    if start.is_file():
        return [top]
    found = []
    for folder, dirs, files in os.walk(start):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__")]
        for f in files:
            found.append((Path(folder) / f).relative_to(root).as_posix().removeprefix("./"))
    return found


def never_pushed(config: Config) -> tuple[str, ...]:
    """orch's own files in the project: `.orch/` (records, the `local` host's tree), orch.yaml
    (the laptop's hosts and their `env:` values: one host never sees another's) and the fetched
    results, which the host never needs."""
    results = (config.root / config.defaults.results_dir).resolve()
    own = (".orch", CONFIG_NAME)
    if results.is_relative_to(config.root.resolve()) and results != config.root.resolve():
        own += (results.relative_to(config.root.resolve()).as_posix(),)
    return own


def list_files(config: Config) -> list[str]:
    """Relative POSIX paths of every file `orch push` sends, sorted."""
    root = config.root
    for extra in config.push_include:
        target = (root / extra).resolve()
        if not target.is_relative_to(root) or not target.exists():
            raise ConfigError(
                f"orch.yaml: push.include: '{extra}' does not exist inside {root}; fix or remove it"
            )
    try:
        listed = _git(root, "ls-files", "-co", "--exclude-standard", "-z")
        files = {f for f in listed.split("\0") if f}
    except NotARepo:  # walk, honouring a top-level .gitignore
        gitignore = _ignore_spec(root, ".gitignore")
        files = {f for f in _walk(root, ".") if not gitignore.match_file(f)}
    never = never_pushed(config)
    files = {f for f in files if not any(f == n or f.startswith(n + "/") for n in never)}
    for extra in config.push_include:
        files.update(_walk(root, extra))
    orchignore = _ignore_spec(root, ".orchignore")
    return sorted(
        f
        for f in files
        if f and not _is_bytecode(f) and (root / f).is_file() and not orchignore.match_file(f)
    )


def _is_bytecode(rel: str) -> bool:
    """`__pycache__/` contents and `.pyc` files: made by Python wherever it runs, never pushed."""
    return rel.endswith(".pyc") or "__pycache__" in rel.split("/")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def local_manifest(config: Config) -> dict[str, str]:
    """path -> sha256 for every file that would be pushed."""
    return {f: sha256_file(config.root / f) for f in list_files(config)}


def code_identity(config: Config, manifest: dict[str, str]) -> CodeIdentity:
    """Commit of the project, whether the pushed files differ from it, and a content hash."""
    content = hashlib.sha256(
        "".join(f"{p}\0{h}\n" for p, h in sorted(manifest.items())).encode()
    ).hexdigest()
    try:  # exit code 1: a repository without a commit yet
        head = _git(config.root, "rev-parse", "--verify", "-q", "HEAD", ok_codes=(0, 1))
    except NotARepo:
        head = ""
    commit = head.strip() or None
    dirty = True
    if commit is not None:
        dirty = bool(_git(config.root, "status", "--porcelain", "--", *manifest).strip())
    return CodeIdentity(commit=commit, dirty=dirty, content_hash=content)
