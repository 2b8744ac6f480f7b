"""Run records on the laptop (`.orch/runs/<run_id>.json`), run ids, and the one atomic write.

A record is written at launch and updated by `orch status`, `cancel` and `fetch`, always via
`atomic_write` (temp file in the same folder + rename), so a concurrent reader never sees half a
file. A record that cannot be read is skipped with a warning naming the file, never silently.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from gpu_worker.outputs import atomic_write

from .config import Config
from .errors import ConfigError, JobNotFound
from .states import RunState
from .sync import CodeIdentity

RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,120}$")
log = logging.getLogger("orchestrator")
_warned: set[tuple[Path, str]] = set()  # said once per process, however often records are read


@dataclass
class RunRecord:
    """The laptop's record of one run (`.orch/runs/<run_id>.json`)."""

    run_id: str
    host: str
    playbook: str
    started_at: float
    overrides: list[str] = field(default_factory=list)
    code: CodeIdentity | None = None
    state: RunState = RunState.RUNNING
    last_seen_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    hourly_rate: float | None = None
    fetched: bool = False
    backend: str = "tmux"
    job_id: str | None = None
    parent: str | None = None
    shard: int | None = None
    num_shards: int | None = None

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if isinstance(kept.get("code"), dict):
            kept["code"] = CodeIdentity(**kept["code"])
        if "state" in kept:
            kept["state"] = RunState(kept["state"])
        return cls(**kept)

    def to_json(self) -> dict:
        """A JSON-ready dict (the file's content)."""
        return asdict(self)


def records_dir(config: Config) -> Path:
    """Where run records live: `.orch/runs/` under the project root."""
    return config.root / ".orch" / "runs"


def check_run_id(run_id: str) -> str:
    """Refuse run ids that could escape their folder or break a shell word."""
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"invalid run id '{run_id}': expected lowercase letters, digits, - _ .")
    return run_id


def new_run_id(playbook: str) -> str:
    """`<playbook>-<YYYYmmdd-HHMMSS>-<4 hex>`."""
    slug = re.sub(r"[^a-z0-9_]+", "-", playbook.lower()).strip("-") or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def save_record(config: Config, record: RunRecord) -> None:
    """Write a run record atomically, so concurrent readers never see half of it."""
    folder = records_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{check_run_id(record.run_id)}.json", json.dumps(record.to_json()))


def read_record(path: Path) -> RunRecord | None:
    """The record in `path`, or None (with a warning naming the file) when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return RunRecord.from_json(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
        if (path, str(exc)) not in _warned:
            _warned.add((path, str(exc)))
            log.warning("%s: corrupt run record, skipped (%s); remove or repair it", path, exc)
        return None


def load_records(config: Config) -> list[RunRecord]:
    """Every readable local run record, oldest first (unreadable ones are warned about)."""
    found = (read_record(p) for p in sorted(records_dir(config).glob("*.json")))
    return sorted((r for r in found if r is not None), key=lambda r: r.started_at)


def forget_record(config: Config, run_id: str) -> str:
    """Delete the local record of `run_id` (exact id or unique prefix); its run id. Nothing on
    the host and nothing under results/ is touched."""
    record = find_record(config, run_id)
    (records_dir(config) / f"{check_run_id(record.run_id)}.json").unlink()
    return record.run_id


def find_record(config: Config, run_id: str) -> RunRecord:
    """The record whose id is `run_id` or starts with it (unambiguously)."""
    records = load_records(config)
    exact = [r for r in records if r.run_id == run_id]
    matches = exact or [r for r in records if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise JobNotFound(f"no run '{run_id}' in .orch/runs; see `orch status --host NAME`")
    names = ", ".join(r.run_id for r in matches[:5])
    raise JobNotFound(f"run '{run_id}' is ambiguous: {names}")
