"""`orch run`'s choice: one run on one host (now, or queued on the host: `--queue`, `--after RUN`),
a sharded run (several hosts or a Slurm array), or `--resume` of a stopped run or shard. The
command line parses; this module decides and starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import Config
from .errors import EXIT_FAILED, EXIT_OK, ConfigError, UsageError
from .hosts import Hosts, scoped
from .records import RunRecord
from .states import RunState

if TYPE_CHECKING:
    from .shards import ShardedRun
    from .status import RunStatus


@dataclass(frozen=True)
class RunRequest:
    """What `orch run` was asked to do."""

    playbook: str | None
    host_name: str | None
    overrides: tuple[str, ...] = ()
    shards: int | None = None
    resume_id: str | None = None
    shard: int | None = None
    follow: bool = False
    allow_concurrent: bool = False
    queue: bool = False
    after: str | None = None  # a run id, prefix or latest:PLAYBOOK


@dataclass(frozen=True)
class StartResult:
    """One started run (`record`, resumed or not), or a sharded run (`sharded`). With
    `followed`: the runs' statuses when they ended (`finals`; fewer than started when one could
    not be read) and, for a sharded run, the parent's combined status (`parents`). `pushed`:
    the push results, for `--json`."""

    record: RunRecord | None = None
    sharded: ShardedRun | None = None
    resumed: bool = False
    followed: bool = False
    finals: list[RunStatus] = field(default_factory=list)
    parents: list = field(default_factory=list)
    pushed: list[dict] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a shard did not start or a followed run (any shard) did not succeed, else 0."""
        if self.followed:
            expected = self.sharded.num_shards if self.sharded is not None else 1
            states = [RunState(f.state) for f in self.finals]
            ok = len(states) == expected and all(s is RunState.SUCCEEDED for s in states)
            return EXIT_OK if ok else EXIT_FAILED
        if self.sharded is not None:
            return EXIT_FAILED if self.sharded.errors else EXIT_OK
        return EXIT_OK

    def to_json(self) -> dict:
        """`orch run --json`: what started, where (a sharded run: its shards and errors)."""
        pushed = {"pushed": self.pushed}
        if self.sharded is not None:
            run = self.sharded
            shards = [{"run_id": r, "host": h} for r, h in zip(run.shards, run.hosts, strict=True)]
            return {
                "run_id": run.parent,
                "playbook": run.playbook,
                "shards": shards,
                "errors": list(run.errors),
            } | pushed
        rec = self.record
        return (
            {"run_id": rec.run_id, "playbook": rec.playbook, "host": rec.host}
            | {
                "resumed": self.resumed,
                "parent": rec.parent,
                "shard": rec.shard,
            }
            | pushed
        )


Started = StartResult  # the name it had


def start_run(
    config: Config, req: RunRequest, on_push: Callable, hosts: Hosts | None = None
) -> Started:
    """Start what `req` asks for; `on_push` is told each push result. `hosts`: the command's
    hosts and connections (None: this call's own)."""
    with scoped(config, hosts) as own:
        return _start(config, req, on_push, own)


def _start(config: Config, req: RunRequest, on_push: Callable, hosts: Hosts) -> Started:
    from . import jobs, playbooks
    from .backends import Options
    from .runrefs import find_run

    if req.shard is not None and not req.resume_id:
        raise UsageError("--shard N goes with --resume PARENT (it starts that shard again)")
    if req.resume_id or req.shards or len(hosts.host_list(req.host_name)) > 1:
        if req.after or req.queue:
            raise UsageError("--after and --queue need one new run on one host")
        return _start_sharded(config, req, on_push, hosts)
    if req.playbook is None:
        raise UsageError("name a PLAYBOOK to run, or --resume RUN")
    host_cfg = hosts.host(req.host_name)
    book = playbooks.resolve(config, req.playbook, req.overrides, host_cfg)
    after = find_run(config, req.after) if req.after else None
    if after is not None and after.host != host_cfg.name:
        raise ConfigError(
            f"--after {after.run_id}: it runs on {after.host}, not {host_cfg.name}; "
            f"queue it there with --host {after.host}"
        )
    options = Options(req.allow_concurrent, req.queue, after)
    record = jobs.launch_one(config, hosts.open(host_cfg), book, options, on_push=on_push)
    return Started(record=record)


def _start_sharded(config: Config, req: RunRequest, on_push: Callable, hosts: Hosts) -> Started:
    """Several hosts, a job array, or `--resume` of one run or shard."""
    from . import playbooks, shards

    if req.resume_id:
        if req.overrides or req.playbook:
            raise UsageError("--resume RUN runs the run's own playbook; drop PLAYBOOK and --set")
        record = shards.resume_target(config, req.resume_id, req.shard)
        host = hosts.host(req.host_name) if req.host_name else None
        target = host or hosts.host(record.host)
        file = record.playbook_file or record.playbook  # `name:` may differ from the file
        book = playbooks.resolve(config, file, tuple(record.overrides), target)
        new = shards.resume(config, book, record, host, on_push, req.allow_concurrent, hosts)
        return Started(record=new, resumed=True)
    if req.playbook is None:
        raise UsageError("name a PLAYBOOK to run")
    targets = hosts.host_list(req.host_name)
    book = playbooks.resolve(
        config, req.playbook, req.overrides, targets[0] if len(targets) == 1 else None
    )
    run = shards.launch_sharded(config, targets, book, req.shards, req.allow_concurrent, on_push)
    return Started(sharded=run)
