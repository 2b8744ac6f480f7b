"""Sharded runs: one playbook split over several hosts (or a Slurm job array), one parent run id.

The sampled indices are cut into contiguous shards (`data.shard`, `data.num_shards`, applied by
the worker: `gpu_worker.data.shard_indices`). Shard i is an ordinary run named `<parent>-s<i>`
with its own record in `.orch/runs/` (field `parent`), so status, logs, cancel and fetch work on
it as on any run; `.orch/shards/<parent>.json` lists the shards and where each runs.
Several hosts: one shard per host, every host pushed and started in parallel. One Slurm host with
`--shards N`: one `sbatch --array=0-N-1`. A lost or failed shard is started again alone with
`orch run --resume PARENT --shard N [--host OTHER]` (on its own host it continues from its
predictions). `orch fetch PARENT` fetches every shard and merges them (orchestrator/merge.py).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gpu_worker.contract import spec
from gpu_worker.contract.fsio import atomic_write

from .backends import Options
from .config import Config, HostConfig
from .errors import ConfigError, JobNotFound, OrchError
from .follow import worst_state
from .hosts import Hosts, scoped
from .jobs import launch, launch_one, run_host
from .playbooks import Resolved
from .records import RunRecord, check_run_id, new_run_id, parents_dir
from .states import RunState
from .status import RunStatus
from .transport import open_host


@dataclass
class ShardedRun:
    """The parent of a sharded run: its shards' run ids and hosts, in shard order."""

    parent: str
    playbook: str
    started_at: float
    num_shards: int
    shards: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    playbook_file: str | None = None  # the playbook file when `playbook` (its name) differs


def shards_dir(config: Config) -> Path:
    """Where parent records live: `.orch/shards/`."""
    return parents_dir(config)


def save_parent(config: Config, run: ShardedRun) -> None:
    """Write the parent record atomically."""
    shards_dir(config).mkdir(parents=True, exist_ok=True)
    path = shards_dir(config) / f"{check_run_id(run.parent)}.json"
    atomic_write(path, json.dumps(asdict(run), indent=1))


def load_parent(config: Config, parent: str) -> ShardedRun | None:
    """The parent record named `parent` (or the one it starts with), or None."""
    folder = shards_dir(config)
    exact = folder / f"{parent}.json"
    found = [exact] if exact.is_file() else sorted(folder.glob(f"{parent}*.json"))
    if len(found) != 1:
        return None
    try:
        return ShardedRun(**json.loads(found[0].read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise OrchError(f"{found[0]}: corrupt parent record ({exc}); remove it") from None


def split(config: Config, run_ids: tuple[str, ...]) -> tuple[tuple[str, ...], list[RunStatus]]:
    """(run ids with every parent replaced by its shards that have a local run record, a
    `not started` status for each shard that has none: its launch failed or was killed).
    With no `run_ids`: (), and the never-started shards of every parent record."""
    from .records import load_records, resolve

    records = load_records(config)
    started = {r.run_id for r in records}
    if run_ids:
        run_ids = tuple(resolve(config, rid, True, records) for rid in run_ids)
        parents = [load_parent(config, rid) for rid in run_ids]
    else:
        parents = [load_parent(config, p.stem) for p in sorted(shards_dir(config).glob("*.json"))]
    out: list[str] = []
    unstarted: list[RunStatus] = []
    for rid, parent in zip(run_ids or [None] * len(parents), parents, strict=True):
        if parent is None:
            out += [rid] if rid else []
            continue
        out += [s for s in parent.shards if s in started]
        unstarted += [
            not_started(parent, i) for i, s in enumerate(parent.shards) if s not in started
        ]
    return (tuple(out) if run_ids else ()), unstarted


def started_records(config: Config, parent_id: str) -> list[RunRecord]:
    """The run records of the shards of `parent_id` that started, in shard order (a run that
    is not a parent: its own record)."""
    from .records import find_record

    ids, unstarted = split(config, (parent_id,))
    if not ids:
        raise JobNotFound(f"{parent_id}: none of its shards started; {unstarted[0].note}")
    return [find_record(config, rid) for rid in ids]


def not_started(parent: ShardedRun, shard: int) -> RunStatus:
    """The status shown for a shard that never started, with the command that starts it."""
    return RunStatus(
        run_id=parent.shards[shard],
        host=parent.hosts[shard],
        playbook=parent.playbook,
        state=RunState.NOT_STARTED,
        note=f"never started; `orch run --resume {parent.parent} --shard {shard}` starts it",
        read_at=time.time(),
        parent=parent.parent,
        shard=shard,
    )


def forget_unstarted(config: Config, parent_id: str) -> bool:
    """Remove the parent record of a sharded run none of whose shards started (a launch killed
    before the first shard began); True when it was removed."""
    from .records import load_records

    parent = load_parent(config, parent_id)
    if parent is None or any(r.parent == parent.parent for r in load_records(config)):
        return False
    (shards_dir(config) / f"{parent.parent}.json").unlink(missing_ok=True)
    return True


def shard_playbook(book: Resolved, shard: int, num_shards: int) -> Resolved:
    """The playbook with `data.shard` and `data.num_shards` set (its spec checked again)."""
    doc = copy.deepcopy(book.doc)
    section = doc.setdefault("data", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{book.name}: data: expected a mapping")
    section.update(shard=shard, num_shards=num_shards)
    if book.spec is None:
        return replace(book, doc=doc)
    parsed = spec.parse_playbook(doc, book.name)
    return replace(book, doc=parsed.doc, spec=parsed)


def launch_sharded(
    config: Config,
    hosts: list[HostConfig],
    book: Resolved,
    shards: int | None = None,
    allow_concurrent: bool = False,
    on_push: Callable | None = None,
) -> ShardedRun:
    """One shard per host, started in parallel; or `shards` tasks of one Slurm job array."""
    count = shards or len(hosts)
    if len(hosts) > 1 and shards not in (None, len(hosts)):
        raise ConfigError(f"--shards {shards} with {len(hosts)} hosts: one shard per host")
    if len(hosts) == 1 and hosts[0].backend != "slurm":
        raise ConfigError("--shards on one host needs a `backend: slurm` host (a job array)")
    parent = new_run_id(book.name)
    run = ShardedRun(parent, book.name, time.time(), count, overrides=list(book.overrides))
    run.playbook_file = book.file or None
    run.shards = [f"{parent}-s{i}" for i in range(count)]
    run.hosts = [h.name for h in hosts] if len(hosts) > 1 else [hosts[0].name] * count
    save_parent(config, run)
    if len(hosts) == 1:
        try:
            with open_host(hosts[0]) as host:
                shard_books = [shard_playbook(book, i, count) for i in range(count)]
                runs = list(zip(run.shards, shard_books, strict=True))
                launch(config, host, runs, Options(True), on_push=on_push, parent=parent)
        except BaseException:  # nothing was submitted: leave no parent behind
            (shards_dir(config) / f"{parent}.json").unlink(missing_ok=True)
            raise
        return run

    def start(i: int) -> str | None:
        try:
            with open_host(hosts[i]) as host:
                launch_one(
                    config,
                    host,
                    shard_playbook(book, i, count),
                    Options(allow_concurrent),
                    on_push=on_push,
                    run_id=run.shards[i],
                    parent=parent,
                )
            return None
        except OrchError as exc:
            return f"shard {i} on {hosts[i].name}: {exc}"

    with ThreadPoolExecutor(count) as pool:
        run.errors = [e for e in pool.map(start, range(count)) if e]
    save_parent(config, run)
    return run


def resume(
    config: Config,
    book: Resolved,
    record: RunRecord,
    host: HostConfig | None,
    on_push: Callable | None = None,
    allow_concurrent: bool = False,
    hosts: Hosts | None = None,
) -> RunRecord:
    """Start `record`'s run again: on its own host it continues from its predictions; on another
    host it starts that shard afresh (the old host's files stay where they are). A copy fetched
    before is renamed to `results/.<run_id>.before-resume-<time>`. `hosts`: the command's
    connections (None: this call's own)."""
    with scoped(config, hosts) as own:
        return _resume(config, book, record, host, on_push, allow_concurrent, own)


def _resume(
    config: Config,
    book: Resolved,
    record: RunRecord,
    host: HostConfig | None,
    on_push: Callable | None,
    allow_concurrent: bool,
    hosts: Hosts,
) -> RunRecord:
    target = host or run_host(config, record, hosts)
    same = target.name == record.host
    from .fetch import results_dir

    if record.num_shards:
        book = shard_playbook(book, record.shard or 0, record.num_shards)
    new = launch_one(
        config,
        hosts.open(target),
        book,
        Options(allow_concurrent),
        on_push=on_push,
        run_id=record.run_id,
        resume=same,
        parent=record.parent,
    )
    fetched = results_dir(config) / record.run_id
    if fetched.exists():  # kept, out of the way of the new attempt's fetch (once it started)
        fetched.rename(fetched.with_name(f".{record.run_id}.before-resume-{int(time.time())}"))
    if record.parent:
        parent = load_parent(config, record.parent)
        if parent is not None and record.shard is not None:
            parent.hosts[record.shard] = target.name
            save_parent(config, parent)
    return new


def resume_target(config: Config, run_id: str, shard: int | None) -> RunRecord:
    """The run record `--resume RUN [--shard N]` names (a parent needs `--shard`)."""
    from .records import find_record, resolve

    run_id = resolve(config, run_id, parents=True)
    parent = load_parent(config, run_id)
    if parent is None:
        if shard is not None:
            raise ConfigError(f"--shard {shard}: {run_id} is not a sharded run")
        return find_record(config, run_id)
    if shard is None or not 0 <= shard < parent.num_shards:
        raise ConfigError(
            f"--resume {parent.parent}: name the shard to run again, "
            f"--shard 0..{parent.num_shards - 1}"
        )
    try:
        return find_record(config, parent.shards[shard])
    except JobNotFound:  # the shard never started: a record to start it from
        return RunRecord(
            run_id=parent.shards[shard],
            host=parent.hosts[shard],
            playbook=parent.playbook,
            playbook_file=parent.playbook_file,
            started_at=time.time(),
            overrides=parent.overrides,
            parent=parent.parent,
            shard=shard,
            num_shards=parent.num_shards,
        )


@dataclass(frozen=True)
class ParentStatus:
    """A sharded run at a glance: its shards' states, images done, and the combined ETA."""

    parent: str
    states: dict[str, int]
    done: int
    total: int
    eta_s: float | None
    state: str


def combine(config: Config, statuses: list) -> list[ParentStatus]:
    """One `ParentStatus` per parent with at least one shard among `statuses`."""
    from .records import load_records

    parents = {r.run_id: r.parent for r in load_records(config) if r.parent}
    groups: dict[str, list] = {}
    for s in statuses:
        parent = s.parent or parents.get(s.run_id)
        if parent:
            groups.setdefault(parent, []).append(s)
    out = []
    for parent, members in groups.items():
        states: dict[str, int] = {}
        for s in members:
            states[s.state] = states.get(s.state, 0) + 1
        etas = [s.eta_s for s in members if s.state == "running" and s.eta_s is not None]
        record = load_parent(config, parent)
        missing = (record.num_shards if record else len(members)) - len(members)
        state = worst_state(list(states))
        out.append(
            ParentStatus(
                parent=parent,
                states=states | ({"not started": missing} if missing else {}),
                done=sum(s.done or 0 for s in members),
                total=sum(s.total or 0 for s in members),
                eta_s=max(etas) if etas else None,
                state="running" if state == "succeeded" and missing else state,
            )
        )
    return out
