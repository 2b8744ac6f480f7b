"""Run commands and move bytes on a host: `SSHHost` (fabric) or `LocalHost` (no SSH), one interface.

- `base`: the `Host` interface, `CommandResult` and the one run loop (stdin, output, timeout,
  errors); `local` and `ssh` implement only starting a command and reading its streams.
- `hostkeys`: known_hosts (trust, fingerprints, changed and revoked keys); `ssh_config`:
  `~/.ssh/config` aliases; `sockets`: TCP tuning of SSH links.
- fabric and paramiko are imported only in this package, and only when a connection is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CHUNK, CommandResult, Host, OutputCallback, Process
from .local import LocalHost
from .ssh import SSHHost

if TYPE_CHECKING:
    from ..config import HostConfig

__all__ = [
    "CHUNK",
    "CommandResult",
    "Host",
    "LocalHost",
    "OutputCallback",
    "Process",
    "SSHHost",
    "open_host",
]


def open_host(config: HostConfig) -> Host:
    """The right `Host` for a configuration: local or SSH (not yet connected)."""
    return LocalHost(config) if config.is_local else SSHHost(config)
