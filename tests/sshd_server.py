"""A real OpenSSH server on 127.0.0.1 for tests and benchmarks: own config, host key, client key.

Usage: ``with SSHServer(tmp_path) as srv: srv.install_client(home, "box")`` then ``ssh box``
(or ``orch ... --host box``) reaches it with strict host key checking.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_binary() -> str:
    """Path of sshd, or raise with the Debian package to install."""
    path = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if path is None:
        raise RuntimeError("sshd not found: install Debian's openssh-server")
    return path


def keygen(path: Path) -> None:
    """Make an ed25519 key pair at `path` and `path`.pub."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


class SSHServer:
    """One sshd process listening on a random loopback port, with its own keys and tmux dir."""

    def __init__(
        self,
        workdir: Path,
        address: str = "127.0.0.1",
        netns: str | None = None,
        home: Path | None = None,
    ) -> None:
        self.dir = Path(workdir)
        self.home = home  # root only: bind-mounted over the user's home for sshd and its sessions
        self.address = address
        self.netns = netns
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.tmux_dir = self.dir / "tmux"
        self.proc: subprocess.Popen | None = None
        if not self.host_key.exists():
            keygen(self.host_key)
            keygen(self.client_key)
        self.tmux_dir.mkdir(exist_ok=True)
        os.chmod(self.tmux_dir, 0o700)
        (self.dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    f"Port {self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    f"SetEnv TMUX_TMPDIR={self.tmux_dir} SHLVL=1",
                    "ClientAliveInterval 5",
                    "ClientAliveCountMax 3",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def start(self) -> SSHServer:
        """Start sshd in the foreground (its own pid) and wait until it answers."""
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)
        log = open(self.dir / "sshd.log", "ab")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        if self.home is not None:  # a private mount namespace: the host's home is `home`
            bind = 'mount --bind "$0" "$1" && shift && exec "$@"'
            user_home = pwd.getpwuid(os.getuid()).pw_dir
            prefix += ["unshare", "-m", "sh", "-c", bind, str(self.home), user_home]
        self.proc = subprocess.Popen(
            [*prefix, sshd_binary(), "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()[-500:]}")

    def stop(self) -> None:
        """Stop sshd and every session it started (so the host looks dead)."""
        if self.proc is not None:
            self.resume()
            subprocess.run(["pkill", "-TERM", "-P", str(self.proc.pid)], check=False)
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        """Freeze the listener: TCP still connects, but no banner ever comes (a hung host)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def known_hosts_line(self) -> str:
        """The known_hosts entry for this server: `[ADDRESS]:PORT ssh-ed25519 ...`."""
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {blob}\n"

    def install_client(self, home: Path, alias: str, trust: bool = True) -> None:
        """Add `alias` to home/.ssh/config (and its key to known_hosts when `trust`)."""
        ssh = Path(home) / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(ssh / "config", "a") as f:
            f.write(
                f"Host {alias}\n  HostName {self.address}\n  Port {self.port}\n  User {self.user}\n"
                f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                "  StrictHostKeyChecking yes\n  BatchMode yes\n\n"
            )
        if trust:
            with open(ssh / "known_hosts", "a") as f:
                f.write(self.known_hosts_line())

    def drop_connections(self) -> None:
        """Cut every open SSH connection (the listener stays up), like a flaky link."""
        if self.proc is not None:
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
