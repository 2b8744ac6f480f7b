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
    """Delete the local record of the run `run_id` names (see `resolve`); its run id. Nothing
    on the host and nothing under results/ is touched."""
    record = find_record(config, run_id)
    (records_dir(config) / f"{check_run_id(record.run_id)}.json").unlink()
    return record.run_id


# -- naming a run ---------------------------------------------------------------------------

LATEST = "@latest"
LEGACY_LATEST = "latest:"  # `latest:PLAYBOOK`, as playbooks' checkpoint references write it


class AmbiguousRun(JobNotFound):
    """A run reference that names several runs (exit 2, as any unknown run)."""


def names_latest(ref: str) -> bool:
    """Whether `ref` is `@latest`, `@latest:PLAYBOOK` or `latest:PLAYBOOK`."""
    return ref == LATEST or ref.startswith((LATEST + ":", LEGACY_LATEST))


def parents_dir(config: Config) -> Path:
    """Where sharded runs' parent records live: `.orch/shards/`."""
    return config.root / ".orch" / "shards"


def find_record(config: Config, ref: str) -> RunRecord:
    """The record of the run `ref` names (see `resolve`; a sharded run's parent is no record)."""
    records = load_records(config)
    run_id = resolve(config, ref, records=records)
    return next(r for r in records if r.run_id == run_id)


def resolve(
    config: Config, ref: str, parents: bool = False, records: list[RunRecord] | None = None
) -> str:
    """The one run id `ref` names, among the local records (and, with `parents`, the sharded
    runs' parents): the id itself, a unique prefix or suffix of one, `@latest` (the newest run)
    or `@latest:PLAYBOOK` (also `latest:PLAYBOOK`). Several shards of one parent matched by a
    prefix or suffix name that parent. Unknown or ambiguous: `JobNotFound` (exit 2) listing
    the candidates."""
    records = load_records(config) if records is None else records
    if names_latest(ref):
        return _latest(ref, records, parents)
    ids = {r.run_id: r.parent for r in records}
    if parents:
        ids |= {r.parent: None for r in records if r.parent}
        ids |= {p.stem: None for p in parents_dir(config).glob("*.json")}
    if ref in ids:
        return ref
    hits = [i for i in ids if i.startswith(ref) or i.endswith(ref)] if ref else []
    hits = [i for i in hits if ids[i] not in hits]  # a shard matched beside its parent
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise JobNotFound(
            f"no run '{ref}' in .orch/runs; see `orch status -a` (a fresh clone: `orch status`)"
        )
    shown = ", ".join(sorted(hits)[:10]) + (f" and {len(hits) - 10} more" if len(hits) > 10 else "")
    raise AmbiguousRun(f"run '{ref}' is ambiguous: {shown}; give more of its id")


def _latest(ref: str, records: list[RunRecord], parents: bool) -> str:
    """The newest run (of one playbook, for `@latest:PLAYBOOK` / `latest:PLAYBOOK`)."""
    playbook = ref.partition(":")[2] if ref != LATEST else None
    runs = [r for r in records if playbook is None or r.playbook == playbook]
    if not runs:
        what = f"of playbook '{playbook}' " if playbook is not None else ""
        raise JobNotFound(f"{ref}: no run {what}in .orch/runs")
    newest = max(runs, key=lambda r: r.started_at)
    return newest.parent if parents and newest.parent else newest.run_id
