"""`orch run`'s choice: one run on one host, a sharded run (several hosts or a Slurm array), or
`--resume` of a stopped run or shard. The command line parses; this module decides and starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .errors import OrchError


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


@dataclass(frozen=True)
class Started:
    """One started run (`record`, resumed or not), or a sharded run (`sharded`)."""

    record: object | None = None  # jobs.RunRecord
    sharded: object | None = None  # shards.ShardedRun
    resumed: bool = False


def start_run(config: Config, req: RunRequest, on_push: Callable) -> Started:
    """Start what `req` asks for; `on_push` is told each push result."""
    from . import jobs, playbooks
    from .transport import open_host

    if req.resume_id or req.shards or len(config.host_list(req.host_name)) > 1:
        if req.follow:
            raise OrchError("--follow needs one run on one host; use `orch status --watch`")
        return _start_sharded(config, req, on_push)
    if req.playbook is None:
        raise OrchError("name a PLAYBOOK to run, or --resume RUN")
    book = playbooks.resolve(config, req.playbook, req.overrides)
    with open_host(config.host(req.host_name)) as host:
        record = jobs.launch(
            config, host, book, allow_concurrent=req.allow_concurrent, on_push=on_push
        )
    return Started(record=record)


def _start_sharded(config: Config, req: RunRequest, on_push: Callable) -> Started:
    """Several hosts, a job array, or `--resume` of one run or shard."""
    from . import playbooks, shards

    if req.resume_id:
        if req.overrides or req.playbook:
            raise OrchError("--resume RUN runs the run's own playbook; drop PLAYBOOK and --set")
        record = shards.resume_target(config, req.resume_id, req.shard)
        book = playbooks.resolve(config, record.playbook, tuple(record.overrides))
        host = config.host(req.host_name) if req.host_name else None
        new = shards.resume(config, book, record, host, on_push, req.allow_concurrent)
        return Started(record=new, resumed=True)
    if req.playbook is None:
        raise OrchError("name a PLAYBOOK to run")
    book = playbooks.resolve(config, req.playbook, req.overrides)
    hosts = config.host_list(req.host_name)
    run = shards.launch_sharded(config, hosts, book, req.shards, req.allow_concurrent, on_push)
    return Started(sharded=run)
