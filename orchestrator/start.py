"""`orch run`'s choice: one run on one host (now, or queued on the host: `--queue`, `--after RUN`),
a sharded run (several hosts or a Slurm array), or `--resume` of a stopped run or shard. The
command line parses; this module decides and starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Config
from .errors import EXIT_FAILED, EXIT_OK, ConfigError, OrchError
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
    """One started run (`record`, resumed or not), or a sharded run (`sharded`); with
    `followed`, the run's status when it ended (`final`, None when it could not be read)."""

    record: RunRecord | None = None
    sharded: ShardedRun | None = None
    resumed: bool = False
    followed: bool = False
    final: RunStatus | None = None

    @property
    def exit_code(self) -> int:
        """1 when a shard did not start or a followed run did not succeed, else 0."""
        if self.sharded is not None:
            return EXIT_FAILED if self.sharded.errors else EXIT_OK
        if self.followed:
            return RunState(self.final.state).exit_code if self.final else EXIT_FAILED
        return EXIT_OK

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        from dataclasses import asdict

        return {
            "record": self.record.to_json() if self.record else None,
            "sharded": asdict(self.sharded) if self.sharded else None,
            "resumed": self.resumed,
            "final": self.final.to_json() if self.final else None,
        }


Started = StartResult  # the name it had


def start_run(config: Config, req: RunRequest, on_push: Callable) -> Started:
    """Start what `req` asks for; `on_push` is told each push result."""
    from . import jobs, playbooks
    from .backends import Options
    from .runrefs import find_run
    from .transport import open_host

    if req.resume_id or req.shards or len(config.host_list(req.host_name)) > 1:
        if req.follow or req.after or req.queue:
            raise OrchError("--follow, --after and --queue need one run on one host")
        return _start_sharded(config, req, on_push)
    if req.playbook is None:
        raise OrchError("name a PLAYBOOK to run, or --resume RUN")
    host_cfg = config.host(req.host_name)
    book = playbooks.resolve(config, req.playbook, req.overrides, host_cfg)
    after = find_run(config, req.after) if req.after else None
    if after is not None and after.host != host_cfg.name:
        raise ConfigError(
            f"--after {after.run_id}: it runs on {after.host}, not {host_cfg.name}; "
            f"queue it there with --host {after.host}"
        )
    options = Options(req.allow_concurrent, req.queue, after)
    with open_host(host_cfg) as host:
        record = jobs.launch_one(config, host, book, options, on_push=on_push)
    return Started(record=record)


def _start_sharded(config: Config, req: RunRequest, on_push: Callable) -> Started:
    """Several hosts, a job array, or `--resume` of one run or shard."""
    from . import playbooks, shards

    if req.resume_id:
        if req.overrides or req.playbook:
            raise OrchError("--resume RUN runs the run's own playbook; drop PLAYBOOK and --set")
        record = shards.resume_target(config, req.resume_id, req.shard)
        host = config.host(req.host_name) if req.host_name else None
        target = host or config.host(record.host)
        book = playbooks.resolve(config, record.playbook, tuple(record.overrides), target)
        new = shards.resume(config, book, record, host, on_push, req.allow_concurrent)
        return Started(record=new, resumed=True)
    if req.playbook is None:
        raise OrchError("name a PLAYBOOK to run")
    hosts = config.host_list(req.host_name)
    book = playbooks.resolve(
        config, req.playbook, req.overrides, hosts[0] if len(hosts) == 1 else None
    )
    run = shards.launch_sharded(config, hosts, book, req.shards, req.allow_concurrent, on_push)
    return Started(sharded=run)
