"""Test hosts in network namespaces: a link that can be cut, an sshd that can be killed.

Each `NetnsHost` is a namespace `orchf-<pid>-<n>` joined to the root namespace by a veth pair
(`eth0` inside) with a /30 from 198.18.0.0/15, which is blackholed first so that nothing in that
range leaves the machine while a link is down. An sshd (tests/sshd_server.py) listens on the
namespace's address with its own TMUX_TMPDIR. `cut()` sets the namespace's eth0 down: packets are
silently dropped, as on a dead link (no RST, and no fast ARP failure: the root side has a
permanent neighbour entry), and `restore()` brings it back.

Teardown kills only the processes inside its own namespaces (by PID, from `ip netns pids`) and the
sshd it started, then deletes the namespaces (which deletes the veth pairs). Needs root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.sshd_server import SSHServer

RANGE = ipaddress.ip_network("198.18.0.0/15")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None when they can): tries to make one."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    probe = f"orchf-{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except OSError as exc:
        return f"`ip` is missing (Debian: iproute2): {exc}"
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` fails here: {exc.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet(index_hint: int) -> ipaddress.IPv4Network:
    """A /30 of 198.18.0.0/15 that no interface on this machine uses (other runs included)."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        for word in line.split():
            if "/" in word and word[0].isdigit():
                used.add(ipaddress.ip_interface(word).network.network_address)
    subnets = list(RANGE.subnets(new_prefix=30))
    for i in range(len(subnets)):
        net = subnets[(index_hint + i) % len(subnets)]
        if net.network_address not in used:
            return net
    raise RuntimeError("no free /30 left in 198.18.0.0/15")


class NetnsHost:
    """One namespace with a veth link and an sshd; see the module docstring."""

    def __init__(self, workdir: Path, index: int) -> None:
        pid = os.getpid()
        self.ns = f"orchf-{pid}-{index}"
        self.veth = f"of{pid}x{index}"[:15]
        _ip("route", "replace", "blackhole", str(RANGE))
        net = _free_subnet(pid * 16 + index)
        outer, inner = list(net.hosts())
        self.address = str(inner)
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
            _ip("addr", "add", f"{outer}/30", "dev", self.veth)
            _ip("link", "set", self.veth, "up")
            _ip("-n", self.ns, "addr", "add", f"{inner}/30", "dev", "eth0")
            _ip("-n", self.ns, "link", "set", "eth0", "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            # a permanent neighbour entry: with the link down, packets vanish silently, as on a
            # dead path across the internet, instead of failing fast when ARP gets no answer
            mac = json.loads(_ip("-n", self.ns, "-j", "link", "show", "eth0").stdout)[0]
            _ip(
                "neigh",
                "replace",
                self.address,
                "lladdr",
                mac["address"],
                "dev",
                self.veth,
                "nud",
                "permanent",
            )
            self.sshd = SSHServer(workdir, address=self.address, netns=self.ns).start()
        except BaseException:
            self.teardown()
            raise

    def cut(self) -> None:
        """Take the link down: every packet to or from the host is dropped from now on."""
        _ip("-n", self.ns, "link", "set", "eth0", "down")

    def restore(self, wait: float = 10.0) -> None:
        """Bring the link back up and wait (at most `wait` s) until sshd answers through it."""
        _ip("-n", self.ns, "link", "set", "eth0", "up")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.sshd.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)

    def pids(self) -> list[int]:
        """Processes running inside this namespace (sshd, its sessions, tmux, jobs)."""
        res = _ip("netns", "pids", self.ns, check=False)
        return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []

    def processes(self) -> list[str]:
        """Command lines of the processes inside the namespace (what `ps` shows there)."""
        out = []
        for pid in self.pids():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            out.append(raw.replace(b"\0", b" ").decode("utf-8", "replace").strip())
        return out

    def teardown(self) -> None:
        """Stop sshd, kill what runs in the namespace (by PID), delete namespace and link."""
        sshd = getattr(self, "sshd", None)
        if sshd is not None:
            sshd.stop()
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        _ip("link", "del", self.veth, check=False)
        _ip("netns", "del", self.ns, check=False)
