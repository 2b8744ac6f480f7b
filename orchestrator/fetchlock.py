"""One `orch fetch` per run at a time, and no temp folder left behind by a fetch that died.

A fetch of run R holds an exclusive `flock` on `results/.R.fetch.lock` while it downloads into
`results/.R.fetch-XXXX` and renames that into place. A second fetch of R waits for the lock (and
then finds R fetched, or fetches it itself when the first failed). A temp folder
`results/.R.fetch-*` whose run's lock can be taken belongs to no live fetch (the kernel drops a
killed process's lock), so `sweep` removes it; a live fetch's folder is never touched.

The lock file is unlinked by its holder on release; a waiter that got the lock on a file since
unlinked tries again on the new one, so two fetches never both think they hold it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gpu_worker.contract.layout import RUN_ID_RE

TEMP_MARK = ".fetch-"


def lock_path(results: Path, run_id: str) -> Path:
    """The lock file of run `run_id`'s fetches."""
    return results / f".{run_id}.fetch.lock"


def _acquire(path: Path, wait: bool) -> int | None:
    """An fd holding the lock on `path` (None when busy and not `wait`)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder before us unlinked it: lock the current file instead


def _release(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)
    os.close(fd)


@contextmanager
def run_lock(results: Path, run_id: str, on_wait: Callable[[], None] | None = None) -> Iterator:
    """Hold run `run_id`'s fetch lock; if another fetch holds it, call `on_wait` and wait."""
    results.mkdir(parents=True, exist_ok=True)
    path = lock_path(results, run_id)
    fd = _acquire(path, wait=False)
    if fd is None:
        if on_wait is not None:
            on_wait()
        fd = _acquire(path, wait=True)
    assert fd is not None
    try:
        yield
    finally:
        _release(path, fd)


def leftover_run(folder: Path) -> str | None:
    """The run id a `.RUN.fetch-XXXX` folder belongs to, or None for any other name."""
    name = folder.name
    if not name.startswith(".") or TEMP_MARK not in name:
        return None
    run_id = name[1 : name.rindex(TEMP_MARK)]
    return run_id if RUN_ID_RE.fullmatch(run_id) else None


def sweep(results: Path) -> list[Path]:
    """Remove the temp folders of fetches that are no longer running; the folders removed."""
    removed = []
    for folder in sorted(results.glob(f".*{TEMP_MARK}*")) if results.is_dir() else []:
        run_id = leftover_run(folder)
        if run_id is None or not folder.is_dir() or folder.is_symlink():
            continue
        path = lock_path(results, run_id)
        fd = _acquire(path, wait=False)
        if fd is None:  # a live fetch of that run owns it
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            _release(path, fd)
    return removed
