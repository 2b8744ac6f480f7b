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

from gpu_worker.contract.fsio import atomic_write
from gpu_worker.contract.layout import RUN_ID_RE, CodeIdentity
from gpu_worker.contract.schema import loads_bounded

from .config import Config
from .errors import ConfigError, JobNotFound, OrchError
from .states import RunState

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,200}$")  # no shell or ssh syntax
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
    remote_dir: str | None = None  # the host's absolute remote_dir, resolved there at launch
    error: str | None = None  # why the run never started (the scheduler refused it)
    after: str | None = None  # the run this one was queued after (`orch run --after`)
    playbook_file: str | None = None  # the playbook file when `playbook` (its name) differs
    notify_pending: bool = False  # `notify:` fires when its end is first seen (notify.py)

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if isinstance(kept.get("code"), dict):
            kept["code"] = CodeIdentity(**kept["code"])
        if "state" in kept:
            kept["state"] = RunState(kept["state"])
        if not isinstance(kept.get("run_id"), str) or not RUN_ID_RE.match(kept["run_id"]):
            raise ValueError(f"invalid run id {str(kept.get('run_id'))[:60]!r}")
        if not isinstance(kept.get("host"), str) or not HOST_NAME_RE.match(kept["host"]):
            raise ValueError(f"invalid host {str(kept.get('host'))[:60]!r}")
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
    """Write a run record atomically, so concurrent readers never see half of it. A local
    write error (a full disk) is an `OrchError` naming the file, not a traceback."""
    folder = records_dir(config)
    path = folder / f"{check_run_id(record.run_id)}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record.to_json()))
    except OSError as exc:
        raise OrchError(f"cannot write the run record {path}: {exc.strerror or exc}") from None


def drop_record(config: Config, run_id: str) -> None:
    """Remove the record of exactly `run_id`, if any (a launch that started nothing)."""
    (records_dir(config) / f"{check_run_id(run_id)}.json").unlink(missing_ok=True)


def read_record(path: Path) -> RunRecord | None:
    """The record in `path`, or None (with a warning naming the file) when it cannot be read."""
    try:
        data = loads_bounded(path.read_bytes())
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return RunRecord.from_json(data)
    except (OSError, TypeError, ValueError) as exc:
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
