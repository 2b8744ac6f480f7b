"""The hosts a command works with: every name `--host` accepts (`list_hosts`).

`Hosts(config)` (one per command) resolves `--host` values once — orch.yaml, the built-in
`local`, then ~/.ssh/config aliases (`ssh -G`, run here, never when orch.yaml loads) — and
hands out one open connection per host for the command's lifetime.
"""

from __future__ import annotations

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
