"""The files a run writes in its output folder, and the one reader of predictions files.

- `predictions.jsonl`: one JSON object per line (per image and method), appended and flushed
  per batch. `read_jsonl` is the one reader of such files (the worker's resume, `score`, the
  orchestrator's shard merge): blank lines are skipped, a bad line is a ValueError naming the
  file and line; with `repair_tail` a torn last line (killed mid-write) is cut off instead.
- `progress.json`: `Progress`, rewritten at most every PROGRESS_EVERY_S seconds.
- `results.json`: written with `write_json_atomic` (temp name in the same folder, then rename),
  like every file the orchestrator reads.
- `.lock`: `hold_run_lock` takes `flock` on it for the worker's whole life, so a second worker
  (a resumed run whose first job still runs) refuses the folder instead of writing beside it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import eta, schema

PROGRESS_EVERY_S = 2.0
LOCK_FILE = ".lock"
_held: dict[str, object] = {}  # run folder -> its open lock file, kept until the process exits


class RunFolderBusy(Exception):
    """Another live worker holds the run folder."""


def hold_run_lock(out: Path) -> None:
    """Take the run folder's lock for the rest of this process, or raise `RunFolderBusy`
    (a folder this process already holds is fine: `run` called twice in one process)."""
    import fcntl

    key = str(Path(out).resolve())
    if key in _held:
        return
    f = open(out / LOCK_FILE, "a+")  # noqa: SIM115 - held open until the process exits
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()[:20] or "?"
        f.close()
        raise RunFolderBusy(
            f"{out}: another worker (pid {holder}) is writing to this run folder; not starting"
        ) from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    _held[key] = f


def atomic_write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Write `path` through a temp file in the same folder and a rename, so a reader sees the old
    file or the new one, never half of it. The one atomic write of both packages (the
    orchestrator imports it: standard library only). `mode`: the new file's permissions."""
    import tempfile

    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, doc: dict) -> None:
    """`doc` as JSON at `path`, atomically."""
    atomic_write(path, json.dumps(doc, ensure_ascii=False))


def read_jsonl(path: str | Path, repair_tail: bool = False) -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-blank line (ValueError names the line).

    `repair_tail`: a missing file reads as empty, and an unparsable last line (a write cut
    short) is dropped from the file rather than refused."""
    path = Path(path)
    if repair_tail and not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = schema.loads_bounded(line)
        except schema.SchemaError:
            if repair_tail and i == len(lines) - 1:
                path.write_text("".join(lines[:i]), encoding="utf-8")
                break
            raise ValueError(f"{path}:{i + 1}: invalid JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object")
        rows.append(row)
    return rows


def append_lines(sink, rows: list[dict]) -> None:
    """Append rows to an open predictions file and make them durable (flush + fsync)."""
    for row in rows:
        sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


@dataclass
class Progress:
    """progress.json, rewritten at most every PROGRESS_EVERY_S seconds; the ETA prices each
    method's remaining images separately (`eta.Tracker`)."""

    path: Path
    total: int
    done: int = 0
    method: str = ""
    rate: float = 0.0
    last_write: float = field(default=0.0)
    tracker: eta.Tracker = field(default_factory=lambda: eta.Tracker({}))

    def update(self, done: int, method: str, rate: float, force: bool = False) -> None:
        """Record progress; write the file when due (or `force`)."""
        self.done, self.method, self.rate = done, method, rate
        now = time.monotonic()
        if force or now - self.last_write >= PROGRESS_EVERY_S:
            estimate = self.tracker.estimate()
            doc = {
                "done": self.done,
                "total": self.total,
                "method": self.method,
                "images_per_s": round(self.rate, 4),
                "eta_s": None if estimate.seconds is None else round(estimate.seconds, 1),
                "eta_approximate": estimate.approximate,
                "updated_at": time.time(),
            }
            write_json_atomic(self.path, schema.validate_progress(doc))
            self.last_write = now
