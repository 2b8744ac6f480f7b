"""`orch push`: send the project to `<remote_dir>/code/` (the job's working directory),
incrementally and atomically, and this orch's worker beside it (`worker.ship`).

- The file list is what git would ship (`git ls-files -co --exclude-standard`: every tracked
  file and every untracked one git does not ignore), plus orch.yaml's `push.include` (sent even
  if git ignores it), minus `.orchignore` patterns (which add to .gitignore rather than
  replacing it), minus orch's own files (`.orch/`, orch.yaml, the results folder).
- One remote command lists the remote tree's sha256s; only new or changed files travel, in one
  gzip'd tar stream over the same connection, together with the list of files to delete.
- The host unpacks into a fresh tree (hard links to the current one, then the changes) and swaps
  the `code` symlink with a rename: a push cut off half-way leaves the previous tree in place.
- Swaps on one host are serialised by `flock` on `<remote_dir>/.trees/.lock`, and each push
  first removes what interrupted pushes left (`.trees/.incoming-<pid>` whose shell is gone).
- Old trees beyond the newest KEEP_TREES are pruned, except a tree a live run works in (its
  `runs/<id>/tree`): that one goes at the first push after its run ends.
- `__pycache__/` and `*.pyc` are never sent nor compared (the worker's own bytecode on the host
  would otherwise make every push re-send or delete files).
- `.orch-identity.json` in the tree records commit, dirty flag and content hash.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from gpu_worker.contract.layout import CODE_DIR, EXIT_BUSY, IDENTITY_FILE, CodeIdentity

from . import shell, worker
from .config import Config
from .errors import OrchError, RemoteCommandError
from .manifest import code_identity, local_manifest, never_pushed
from .transport import Host

DELETE_LIST = ".orch-delete"
KEEP_TREES = 3
# The trees live runs use (runs/*/tree, written by the job): a run without an exit code whose
# wrapper is alive here, or that runs on another node (Slurm: until its exit code appears).
# A job not yet started resolves `code` when it starts, so it needs no old tree.
IN_USE = """keep=$(for r in runs/*/; do
  [ -f "$r/tree" ] && [ ! -f "$r/exit_code" ] || continue
  p=$(cat "$r/pid" 2>/dev/null || true); n=$(cat "$r/node" 2>/dev/null || true)
  if kill -0 "$p" 2>/dev/null || { [ -n "$n" ] && [ "$n" != "$(hostname)" ]; }; then
    t_=$(cat "$r/tree" || true); echo "${t_##*/}"
  fi
done)"""
LOCK_WAIT_S = 60
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class PushResult:
    """What a push did (or, with dry_run, would do)."""

    host: str
    sent: list[str]
    deleted: list[str]
    unchanged: int
    bytes_sent: int
    identity: CodeIdentity
    dry_run: bool = False
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-ready dict of the result."""
        return asdict(self)


def remote_manifest(host: Host) -> tuple[dict[str, str], dict | None]:
    """path -> sha256 of the host's current tree, and its recorded identity (one round trip)."""
    code = shell.remote(host.remote_dir, CODE_DIR)
    ident = shell.quote(IDENTITY_FILE)
    res = host.run(
        shell.trusted(
            f"cd {code} 2>/dev/null || exit 0; "
            f"find . -name __pycache__ -prune -o -type f ! -name {ident} ! -name '*.pyc' "
            "-print0 | xargs -0 -r sha256sum; "
            f"echo '#identity'; cat {ident} 2>/dev/null || true"
        ),
        # hashing a big tree (push.include data) takes time; a dead link is still noticed by
        # the keepalive within the host's timeout, as for the swap and for fetch
        timeout=max(host.config.timeout, 600.0),
    )
    text, _, ident = res.text.partition("#identity\n")
    manifest = {}
    for line in text.split("\n"):
        digest, name = _checksum_line(line)
        if name.startswith("./"):
            manifest[name[2:]] = digest
    try:
        identity = json.loads(ident) if ident.strip() else None
    except json.JSONDecodeError:
        identity = None
    return manifest, identity


_UNESCAPE = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


def _checksum_line(line: str) -> tuple[str, str]:
    """(digest, name) of one `sha256sum` output line. GNU sha256sum marks a line whose name holds
    a backslash, a newline or a carriage return with a leading backslash and writes them as
    `\\\\`, `\\n`, `\\r` (so a file name with a newline stays on one line): undone here."""
    digest, _, name = line.partition("  ")
    if not digest.startswith("\\"):
        return digest, name
    return digest[1:], re.sub(r"\\[\\nr]", lambda m: _UNESCAPE[m.group()], name)


def _swap_script(host: Host, tree_name: str) -> shell.Quoted:
    """The host-side script: stage a new tree from stdin's tar, then swap `code` atomically.

    Staging needs no lock (each push has its own `.incoming-<pid>`); the swap and the pruning of
    old trees hold `flock` on `.trees/.lock`, for a moment only, so a push whose link died while
    sending never blocks the next one. Stagings whose shell is gone are removed first.
    """
    top, delete_list = shell.remote(host.remote_dir), shell.quote(DELETE_LIST)
    return shell.trusted(f"""set -e
cd {top} 2>/dev/null || {{ mkdir -p {top}; cd {top}; }}
mkdir -p .trees
for old in .trees/.incoming-*; do
  if [ -e "$old" ] && ! kill -0 "${{old##*-}}" 2>/dev/null; then rm -rf "$old"; fi
done
new=.trees/.incoming-$$
trap 'rm -rf "$new"' EXIT
if [ -d code/ ]; then cp -al code/. "$new"; else mkdir "$new"; fi
tar -xz --unlink-first --no-same-owner -f - -C "$new"
if [ -f "$new"/{delete_list} ]; then
  (cd "$new" && xargs -0 -r rm -f -- < {delete_list} && rm -f {delete_list})
  find "$new" -mindepth 1 -type d -empty -delete
fi
exec 9>> .trees/.lock
if command -v flock >/dev/null; then
  flock -w {LOCK_WAIT_S} 9 ||
    {{ echo "another push to this host held the lock for {LOCK_WAIT_S}s" >&2; exit {EXIT_BUSY}; }}
fi
if [ -d code ] && [ ! -L code ]; then mv code .trees/legacy-$$; fi
t={shell.quote(tree_name)}
[ ! -e ".trees/$t" ] || t="$t-$$"
mv -T "$new" ".trees/$t"
ln -sfn ".trees/$t" code.new.$$
mv -Tf code.new.$$ code
{IN_USE}
ls -1t .trees | grep -v '^[.]' | grep -vx "$t" | tail -n +{KEEP_TREES} | while IFS= read -r old; do
  case " $keep " in *" $old "*) ;; *) rm -rf -- ".trees/$old" ;; esac
done
""")


class _CountingReader(io.RawIOBase):
    """Wraps a file, reporting bytes read to a progress callback."""

    def __init__(self, f, total: int, on_progress: ProgressCallback | None) -> None:
        self.f, self.total, self.done, self.on_progress = f, total, 0, on_progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        return data


def _pack(buf: IO[bytes], root: Path, files: list[str], extra: dict[str, bytes | None]) -> None:
    """A gzipped tar of `files` (symlinks sent as their content) plus the `extra` small files."""
    with tarfile.open(fileobj=buf, mode="w|gz", format=tarfile.USTAR_FORMAT) as tar:
        for rel in files:
            src = root / rel
            info = tar.gettarinfo(str(src), arcname=rel)
            info.type, info.linkname = tarfile.REGTYPE, ""
            info.size = src.stat().st_size  # follow symlinks: send the content
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(src, "rb") as f:
                tar.addfile(info, f)
        for name, data in extra.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                tar.addfile(info, io.BytesIO(data))


def push(
    config: Config,
    host: Host,
    *,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PushResult:
    """Bring `<remote_dir>/code` up to date with the local file list; see the module docstring."""
    started = time.monotonic()
    if not dry_run:
        worker.ship(host)
    with ThreadPoolExecutor(1) as pool:  # hash locally while the host lists its tree
        local_job = pool.submit(local_manifest, config)
        remote, remote_identity = remote_manifest(host)
        local = local_job.result()
    identity = code_identity(config, local)
    sent = [p for p, h in local.items() if remote.get(p) != h]
    deleted = sorted(set(remote) - set(local))
    ident_json = json.dumps(asdict(identity), indent=1).encode()
    same_identity = remote_identity is not None and all(
        remote_identity.get(k) == v for k, v in asdict(identity).items()
    )

    def result(bytes_sent: int) -> PushResult:
        return PushResult(
            host=host.name,
            sent=sent,
            deleted=deleted,
            unchanged=len(local) - len(sent),
            bytes_sent=bytes_sent,
            identity=identity,
            dry_run=dry_run,
            seconds=time.monotonic() - started,
        )

    if dry_run or (not sent and not deleted and same_identity):
        return result(0)
    if not sent and not deleted:  # same files, new commit: rewrite only the identity
        host.write_file(shell.remote(host.remote_dir, CODE_DIR, IDENTITY_FILE), ident_json)
        return result(len(ident_json))
    deletions = "\0".join(deleted).encode() if deleted else None
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
        _pack(buf, config.root, sent, {IDENTITY_FILE: ident_json, DELETE_LIST: deletions})
        total = buf.tell()
        buf.seek(0)
        tree_name = time.strftime("%Y%m%d-%H%M%S") + f"-{identity.content_hash[:12]}"
        try:
            host.run(
                _swap_script(host, tree_name),
                stdin=_CountingReader(buf, total, on_progress),
                timeout=max(host.config.timeout, 600.0),
            )
        except RemoteCommandError as exc:
            tail = " | ".join(exc.stderr.strip().splitlines()[-2:])
            raise OrchError(
                f"{host.name}: push to {host.remote_dir} failed, the previous code tree is "
                f"unchanged: {tail}"
            ) from None
    return result(total)


def watch(
    config: Config,
    host: Host,
    on_push: Callable[[PushResult], None],
    debounce: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Push now, then again whenever a file in the push list changes (debounced), until `stop()`."""
    import threading

    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()
    root = config.root.resolve()
    never = (".git", *never_pushed(config))

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            for p in (event.src_path, getattr(event, "dest_path", "")):
                try:
                    rel = Path(os.fsdecode(p)).resolve().relative_to(root).as_posix()
                except ValueError:
                    continue
                if not any(rel == n or rel.startswith(n + "/") for n in never):
                    changed.set()

    observer = Observer()
    handler = Handler()
    observer.schedule(handler, str(root), recursive=False)  # top-level files
    for top in sorted(root.iterdir()):  # every folder but .git/ and orch's own (.orch/, results)
        if top.is_dir() and top.name not in never:
            observer.schedule(handler, str(top), recursive=True)
    observer.start()
    try:
        on_push(push(config, host))
        while not stop():
            if not changed.wait(0.2):
                continue
            while changed.is_set():  # debounce: wait for a quiet period
                changed.clear()
                time.sleep(debounce)
            on_push(push(config, host))
    finally:
        observer.stop()
        observer.join()
