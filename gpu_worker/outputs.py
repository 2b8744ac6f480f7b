"""The files a run writes in its output folder while it runs.

- `predictions.jsonl`: one JSON object per line (per image and method), appended and flushed
  per batch (`append_lines`); read back with `contract.fsio.read_jsonl` (resume, `score`, the
  shard merge).
- `progress.json`: `Progress`, rewritten at most every PROGRESS_EVERY_S seconds.
- `results.json`: written with `contract.fsio.write_json_atomic` (temp name in the same folder,
  then rename), like every file the orchestrator reads.
- `.lock`: `hold_run_lock` takes `flock` on it for the worker's whole life, so a second worker
  (a resumed run whose first job still runs) refuses the folder instead of writing beside it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import eta
from .contract import schema
from .contract.fsio import write_json_atomic

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
    paths: dict[str, str | None] = field(default_factory=dict)  # method -> its LoRA path

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
            if self.paths.get(self.method):
                doc["lora_path"] = self.paths[self.method]
            write_json_atomic(self.path, schema.validate_progress(doc))
            self.last_write = now
