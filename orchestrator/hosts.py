"""The hosts one command works with: `Hosts(config)` resolves `--host` values and hands out one
open connection per host for the command's lifetime; `list_hosts` is every name `--host`
accepts.

Resolution order: orch.yaml's `hosts:`, the built-in `local`, then ~/.ssh/config aliases (which
needs `ssh -G`: it runs here, once per name and command, never when orch.yaml loads). A name
that is none of them is a `ConfigError` naming what `--host` accepts.

Connections: `Hosts.open(host_config)` gives a `Host` sharing the command's one connection to
that host (opened on its first command, reopened by the next after a lost link); the shared
`Host` carries the given configuration (a run's own `remote_dir`). Closing what `open` gave is a
no-op; `Hosts.close()` (or leaving `with Hosts(config) as hosts:`) closes every connection.
A function that accepts `hosts=None` makes its own for the call (`scoped`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from gpu_worker.contract.hints import did_you_mean

from .config import CONFIG_NAME, LOCAL_HOST, Config, HostConfig
from .errors import ConfigError
from .transport import Host, Process, open_host
from .transport.ssh_config import is_configured, literal_hosts


class Hosts:
    """One command's host inventory and connections (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._resolved: dict[str, HostConfig] = {}
        self._aliases: set[str] | None = None
        self._shared: dict[str, tuple[Host, threading.Lock]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names --------------------------------------------------------------------------------
    def host(self, name: str | None) -> HostConfig:
        """Resolve a `--host` value (None: `defaults.host`): orch.yaml, `local`, ssh alias."""
        name = name or self.config.defaults.host
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name)
        return self._resolved[name]

    def host_list(self, value: str | None) -> list[HostConfig]:
        """`--host a,b` or a group from `groups:` as hosts (one name: a list of one)."""
        value = value or self.config.defaults.host
        groups = self.config.groups
        names = groups.get(value) or [n.strip() for n in value.split(",") if n.strip()]
        if len(set(names)) != len(names):
            raise ConfigError(f"--host {value}: a host is named twice")
        return [self.host(n) for n in names]

    def aliases(self) -> set[str]:
        """The literal host names of ~/.ssh/config (read once)."""
        if self._aliases is None:
            self._aliases = literal_hosts()
        return self._aliases

    def _resolve(self, name: str) -> HostConfig:
        if name in self.config.hosts:
            return self.config.hosts[name]
        if name == LOCAL_HOST:
            return HostConfig(
                name=LOCAL_HOST,
                hostname="localhost",
                remote_dir=str(self.config.root / ".orch" / "local"),
                is_local=True,
            )
        if is_configured(name):
            return HostConfig(name=name, hostname=name)
        known = sorted(set(self.config.hosts) | {LOCAL_HOST} | self.aliases())
        raise ConfigError(
            f"unknown host '{name}': not in {CONFIG_NAME} hosts, not 'local', not a host that "
            f"~/.ssh/config configures{did_you_mean(name, known)}; add it under hosts: in "
            f"{CONFIG_NAME}"
        )

    # -- connections --------------------------------------------------------------------------
    def open(self, config: HostConfig) -> Host:
        """A `Host` for `config` on the command's one connection to that host."""
        with self._lock:
            if config.name not in self._shared:
                self._shared[config.name] = (open_host(config), threading.Lock())
            base, connecting = self._shared[config.name]
        return _Shared(base, connecting, config)

    def close(self) -> None:
        """Close every connection this command opened."""
        with self._lock:
            shared, self._shared = list(self._shared.values()), {}
        for host, _ in shared:
            host.close()


@contextmanager
def scoped(config: Config, hosts: Hosts | None) -> Iterator[Hosts]:
    """`hosts`, or a `Hosts` of its own for one call (closed when it ends)."""
    if hosts is not None:
        yield hosts
        return
    with Hosts(config) as own:
        yield own


class _Shared(Host):
    """A host's shared connection seen with one configuration (its `remote_dir`): commands go
    over `base`'s connection; closing this leaves the connection to its `Hosts`."""

    def __init__(self, base: Host, connecting: threading.Lock, config: HostConfig) -> None:
        super().__init__(config)
        self.base = base
        self._connecting = connecting

    def _start(self, command: str) -> Process:
        with self._connecting:  # one connect at a time, however many threads share it
            connect = getattr(self.base, "connect", None)
            if connect is not None:
                connect()
        return self.base._start(command)

    def _link_error(self, exc: Exception, command: str) -> BaseException:
        return self.base._link_error(exc, command)

    def _abandon(self) -> None:
        self.base._abandon()

    def __getattr__(self, name: str):
        return getattr(self.base, name)  # what only one kind of host has (trust, endpoint)


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


def list_hosts(hosts: Hosts | Config) -> list[HostEntry]:
    """Hosts from orch.yaml, then the built-in `local`, then literal ~/.ssh/config aliases."""
    hosts = Hosts(hosts) if isinstance(hosts, Config) else hosts
    config = hosts.config
    names = list(config.hosts) + [n for n in (LOCAL_HOST,) if n not in config.hosts]
    names += sorted(hosts.aliases() - set(names))
    entries = []
    for n in names:
        h = hosts.host(n)
        source = (
            "orch.yaml" if n in config.hosts else ("built-in" if n == LOCAL_HOST else "ssh config")
        )
        entries.append(HostEntry(n, h.hostname, h.remote_dir, source))
    return entries
