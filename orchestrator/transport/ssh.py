"""`SSHHost`: a host reached over SSH with fabric/paramiko (the only module importing them).

Contract (the run loop itself is `base.Host.run`):
- Anything that means "we could not talk to the host" (refused, timed out, link lost, host key not
  trusted) raises `HostUnreachable` (exit code 3), never `RemoteCommandError`.
- Host keys are checked strictly against known_hosts; unknown, changed (`HostKeyChanged`) or
  revoked (`HostKeyRevoked`) keys are refused.
- Every wait has a limit: connect, banner, auth, channel open, each command (`timeout`), and
  kernel TCP keepalive / TCP_USER_TIMEOUT so a dead link is noticed within the host's timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (
    ConfigError,
    HostKeyChanged,
    HostKeyError,
    HostKeyRevoked,
    HostUnreachable,
    brief,
)
from . import hostkeys, sockets, ssh_config
from .base import Host, Process
from .hostkeys import HostKeyPolicy, fingerprint
from .ssh_config import SSHOptions

if TYPE_CHECKING:
    from ..config import HostConfig

# paramiko logs each failed handshake with a traceback (20 lines a try); orch reports the failure
# itself in one line (`SSHHost._unreachable`), so its records go nowhere.
_PARAMIKO_LOG = logging.getLogger("paramiko")
_PARAMIKO_LOG.addHandler(logging.NullHandler())
_PARAMIKO_LOG.propagate = False


class NoSSHBanner(Exception):
    """Something accepted the TCP connection but sent no SSH banner (sshd still starting, or
    another service on the port)."""


class ConnectionLost(ConnectionError):
    """The channel closed without an exit status: the link died during the command."""


class SSHHost(Host):
    """A host reached over SSH with fabric; strict host keys, timeouts and keepalives."""

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self._conn = None
        self.policies: list[HostKeyPolicy] = []  # one per hop, the target's last
        self.trusting = False
        self._options: SSHOptions | None = None  # resolved once: `ssh -G` runs subprocesses

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection (retrying once on a flaky link) within the host's timeout."""
        if self._conn is not None and self._conn.is_connected:
            return
        deadline = time.monotonic() + self.config.timeout
        delay = 0.3
        while True:
            try:
                self._open()
                return
            except (HostKeyError, ConfigError):  # refused by us, or the ssh config is wrong
                raise
            except Exception as exc:  # noqa: BLE001 - classified just below
                self.close()
                if not _is_flaky(exc) or time.monotonic() + delay >= deadline:
                    raise self._unreachable(exc) from None
                time.sleep(delay)
                delay *= 2

    def options(self) -> SSHOptions:
        """The ssh configuration's options for this host; orch.yaml's user, port, identity
        file and known_hosts win over it (as `ssh -l/-p/-i` would). Resolved on the first
        call and kept, so retries and reconnects (`logs -f`) do not run `ssh -G` again."""
        if self._options is not None:
            return self._options
        opts = ssh_config.resolve(self.config.hostname)
        hc = self.config
        self._options = dataclasses.replace(
            opts,
            user=hc.user or opts.user,
            port=hc.port or opts.port,
            identity_files=(hc.identity_file,) if hc.identity_file else opts.identity_files,
            known_hosts_files=(hc.known_hosts,) if hc.known_hosts else opts.known_hosts_files,
        )
        return self._options

    def _connection(self, opts: SSHOptions, gateway):
        """A fabric Connection for one hop, with its own known hosts and policy."""
        from fabric import Config, Connection
        from paramiko import SSHConfig

        t = self.config.timeout
        kwargs = {"banner_timeout": t, "auth_timeout": t, "channel_timeout": t}
        keys = [os.path.expanduser(k) for k in opts.identity_files]
        if keys:
            kwargs["key_filename"] = [k for k in keys if os.path.exists(k)] or keys
        if opts.identities_only and keys:
            kwargs.update(allow_agent=False, look_for_keys=False)
        fab_config = Config(  # an empty SSHConfig: fabric must not read ~/.ssh/config itself
            overrides={"timeouts": {"connect": max(1, math.ceil(t))}}, ssh_config=SSHConfig()
        )
        conn = Connection(
            opts.hostname,
            user=opts.user,
            port=opts.port,
            config=fab_config,
            connect_kwargs=kwargs,
            gateway=gateway,
        )
        known = hostkeys.load([*opts.known_hosts_files, *opts.global_known_hosts_files])
        known.install(conn.client.get_host_keys())
        if self.trusting:  # `orch hosts trust` asks even where the config would accept a key
            opts = dataclasses.replace(opts, strict_host_key_checking="yes")
        policy = HostKeyPolicy(self.name, opts, known)
        conn.client.set_missing_host_key_policy(policy)
        self.policies.append(policy)
        return conn

    def _gateway(self, opts: SSHOptions):
        """The chain of ProxyJump hops (`a,b`: a, then b through a), each resolved and checked
        like the target; else the ProxyCommand (a string fabric runs); else None."""
        gateway = None if opts.proxy_jump else opts.proxy_command
        for hop in (opts.proxy_jump or "").split(","):
            if not hop.strip():
                continue
            user, _, rest = hop.strip().rpartition("@")
            name, _, port = rest.partition(":")
            hop_opts = ssh_config.resolve(name)
            hop_opts = dataclasses.replace(
                hop_opts, user=user or hop_opts.user, port=int(port) if port else hop_opts.port
            )
            gateway = self._connection(hop_opts, gateway)
        return gateway

    def _open(self) -> None:
        from paramiko import BadHostKeyException

        opts = self.options()
        self.policies = []
        conn = self._connection(opts, self._gateway(opts))
        self.endpoint = (conn.host, int(conn.port))
        self._conn = conn
        t = self.config.timeout
        if conn.gateway is None:  # our own socket, tuned before the handshake (NODELAY: 3x faster)
            conn.connect_kwargs["sock"] = sockets.connect(self.endpoint, t)
        try:
            conn.open()
        except BadHostKeyException as exc:
            for policy in self.policies:  # the hop that offered it: its files revoke it
                policy.refuse_revoked(exc.hostname, exc.key)
            raise HostKeyChanged(
                f"{self.name}: host key of {exc.hostname} CHANGED (now {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)}); if the host was reinstalled, "
                f"run `orch hosts trust {self.name} --replace`, else do not connect"
            ) from None
        except Exception as exc:
            transport = conn.client.get_transport()
            if transport is not None and not transport.remote_version:
                raise NoSSHBanner(str(exc)) from exc  # whatever paramiko said after that
            raise
        # an SSH-level keepalive is data in flight, so TCP_USER_TIMEOUT notices a dead link
        conn.transport.set_keepalive(max(1, min(5, math.ceil(self.config.timeout))))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead link may fail; nothing to keep
                pass
            self._conn = None

    def _unreachable(self, exc: BaseException) -> HostUnreachable:
        where = f"{self.config.hostname}" + (f":{self.config.port}" if self.config.port else "")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, NoSSHBanner):
            reason = (
                f"it accepts TCP but does not speak SSH (no SSH banner within "
                f"{self.config.timeout:g}s); if it just started, its sshd may not be up yet: "
                "try again in a minute"
            )
        return HostUnreachable(f"{self.name}: unreachable ({where}): {reason}")

    # -- what the run loop needs -----------------------------------------------------------
    def _start(self, command: str) -> Process:
        self.connect()
        chan = self._conn.transport.open_session(timeout=self.config.timeout)
        chan.exec_command(command)
        return _Channel(chan)

    def _abandon(self) -> None:
        self.close()

    def _link_error(self, exc: Exception, command: str) -> BaseException:
        if isinstance(exc, ConnectionLost):
            return HostUnreachable(f"{self.name}: connection lost during: {brief(command)}")
        return self._unreachable(exc)

    # -- trust ----------------------------------------------------------------------------
    def trust(self, confirm: Callable[[str], bool], replace: bool = False) -> str:
        """Fetch the host's key, ask `confirm(fingerprint)`, record it in the first known_hosts
        file of the host's ssh configuration, keeping that file's other lines."""
        self.trusting = True
        try:
            self.connect()
            return f"{self.name}: already trusted"
        except HostKeyChanged:
            if not replace:
                raise
        except HostKeyRevoked:
            raise
        except HostKeyError:
            pass  # unknown key: shown below, recorded if confirmed
        # the hop whose key was refused (a ProxyJump hop, or the target: the last)
        policy = next((p for p in self.policies if p.seen), self.policies[-1])
        seen = policy.seen
        if seen is None:  # changed key with --replace: read the offered key directly
            seen = self._offered_key()
        hostname, key = seen
        policy.refuse_revoked(hostname, key)
        fp = fingerprint(key)
        if not confirm(f"{hostname} {key.get_name()} {fp}"):
            raise HostKeyError(f"{self.name}: host key not trusted; nothing written")
        files = policy.opts.known_hosts_files
        if not files or not hostkeys.can_record(files[0]):
            raise HostKeyError(
                f"{self.name}: cannot record the key: the ssh configuration's UserKnownHostsFile "
                f"is {files[0] if files else 'none'}; nothing written"
            )
        hostkeys.add_key(files[0], hostname, key, replace=True)
        return f"{self.name}: trusted {hostname} {key.get_name()} {fp}"

    def _offered_key(self) -> tuple[str, object]:
        import paramiko

        host, port = self.endpoint
        with socket.create_connection((host, port), timeout=self.config.timeout) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=self.config.timeout)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
        return (host if port == 22 else f"[{host}]:{port}", key)


class _Channel(Process):
    """A paramiko channel running one command."""

    def __init__(self, chan) -> None:
        self.chan = chan

    def write(self, data: bytes) -> None:
        self.chan.sendall(data)

    def close_stdin(self) -> None:
        self.chan.shutdown_write()

    def read(self, size: int) -> bytes:
        return self.chan.recv(size)

    def read_stderr(self) -> bytes:
        return self.chan.makefile_stderr("rb").read()

    def wait(self, timeout: float | None) -> int | None:
        if not self.chan.status_event.wait(timeout):
            return None
        code = self.chan.recv_exit_status()
        if code == -1:
            raise ConnectionLost("no exit status")
        return code

    def kill(self) -> None:
        """Close the channel; a link that already died needs no closing."""
        try:
            self.chan.close()
        except (EOFError, OSError):
            pass


def _is_flaky(exc: BaseException) -> bool:
    """A protocol hiccup worth one more try (a link that just came back), not a refusal."""
    import paramiko

    return isinstance(exc, (EOFError, paramiko.SSHException)) and not isinstance(
        exc, paramiko.AuthenticationException
    )
