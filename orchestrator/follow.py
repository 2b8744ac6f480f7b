"""Library parts of two commands that used to live in `cli.py`: the host list and `--follow`.

`list_hosts` is every host `--host` accepts, with where it comes from; `follow_run` streams a
run's log until the job ends (reconnecting if the link drops) and returns the run's final status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from .config import LOCAL_HOST, Config, ssh_config_aliases


@dataclass(frozen=True)
class HostEntry:
    """One host `--host` accepts: its name, address, remote folder and source."""

    name: str
    hostname: str
    remote_dir: str
    source: str  # "orch.yaml", "built-in" or "ssh config"

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def list_hosts(config: Config) -> list[HostEntry]:
    """Hosts from orch.yaml, then the built-in `local`, then literal ~/.ssh/config aliases."""
    names = list(config.hosts) + [n for n in (LOCAL_HOST,) if n not in config.hosts]
    names += sorted(ssh_config_aliases() - set(names))
    entries = []
    for n in names:
        h = config.host(n)
        source = (
            "orch.yaml" if n in config.hosts else ("built-in" if n == LOCAL_HOST else "ssh config")
        )
        entries.append(HostEntry(n, h.hostname, h.remote_dir, source))
    return entries


def follow_run(
    config: Config,
    record,
    lines: int,
    write: Callable[[bytes], None],
    warn: Callable[[str], None],
):
    """Stream `record`'s log from its last `lines` until the job ends; return its final status
    (a `jobs.RunStatus`, or None when the run is no longer known)."""
    from . import jobs

    jobs.stream_log(config, record, lines, True, write, warn)
    final = jobs.collect_status(config, [record.run_id])
    return final[0] if final else None
