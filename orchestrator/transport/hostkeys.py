"""known_hosts files as OpenSSH writes them, read and edited without losing anything.

- Plain (`host,other ssh-ed25519 AAAA...`) and hashed (`|1|salt|hash ...`) host names are used.
- `@revoked` keys are remembered, and a host offering one is refused (even when another line
  lists the same key). `@cert-authority` lines are skipped (orch does not use host
  certificates), and so are lines with key types paramiko cannot read: they never stop orch
  from connecting to the hosts it can check.
- `add_key` (`orch hosts trust`) rewrites only the lines of the host being trusted: comments,
  markers, other hosts' lines and their order are kept byte for byte; it never writes into
  something that is not a regular file (`UserKnownHostsFile /dev/null`).
- `HostKeyPolicy` is paramiko's missing-key policy for one hop: refuse, except where the ssh
  configuration itself says StrictHostKeyChecking no/accept-new (then accept, record, and say
  so on stderr); a revoked key is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gpu_worker.contract.fsio import atomic_write

from ..errors import HostKeyError, HostKeyRevoked
from .ssh_config import SSHOptions


@dataclass
class KnownHosts:
    """The usable entries and revoked keys of one or more known_hosts files."""

    entries: list[tuple[str, str, object]] = field(default_factory=list)  # (name, type, key)
    revoked: dict[bytes, str] = field(default_factory=dict)  # key blob -> file that revokes it

    def install(self, host_keys) -> None:
        """Add every usable entry to a paramiko `HostKeys` (an SSHClient's `get_host_keys()`)."""
        for name, keytype, key in self.entries:
            if key.asbytes() not in self.revoked:
                host_keys.add(name, keytype, key)

    def revoked_by(self, key) -> str | None:
        """The file that revokes `key` (a paramiko key), or None."""
        return self.revoked.get(key.asbytes())


def _parse_key(keytype: str, blob: str):
    """A paramiko key, or None for a key orch cannot read (unknown type, bad base64)."""
    from paramiko import PKey

    try:
        return PKey.from_type_string(keytype, base64.b64decode(blob))
    except Exception:  # noqa: BLE001 - paramiko raises several types here; the line is skipped
        return None


def load(paths: list[str] | tuple[str, ...]) -> KnownHosts:
    """Read the known_hosts files that exist among `paths` (see the module docstring)."""
    known = KnownHosts()
    for path in paths:
        p = Path(os.path.expanduser(path))
        if not p.is_file():
            continue
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = fields.pop(0) if fields[0].startswith("@") else None
            if len(fields) < 3 or marker not in (None, "@revoked"):
                continue  # @cert-authority and unknown markers: not used by orch
            key = _parse_key(fields[1], fields[2])
            if key is None:
                continue
            if marker == "@revoked":
                known.revoked[key.asbytes()] = str(p)
                continue
            for name in fields[0].split(","):
                if name and not name.startswith("!"):
                    known.entries.append((name, fields[1], key))
    return known


def matches(pattern: str, hostname: str) -> bool:
    """Does a known_hosts name (plain or `|1|salt|hash`) stand for `hostname`?"""
    if pattern.startswith("|1|"):
        try:
            salt_b64, digest_b64 = pattern[3:].split("|", 1)
            salt = base64.b64decode(salt_b64)
            mine = hmac.new(salt, hostname.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mine, base64.b64decode(digest_b64))
        except (ValueError, TypeError):
            return False
    return pattern == hostname


def add_key(path: str, hostname: str, key, replace: bool = False) -> None:
    """Record `hostname`'s `key` in the known_hosts file `path`, keeping every other line.

    With `replace`, the host's earlier lines (plain or hashed) are removed first; a line that
    also names other hosts keeps them. Written to a temp file and renamed; mode 0600 if new.
    """
    p = Path(os.path.expanduser(path))
    if not can_record(path):
        raise OSError(f"{p} is not a regular file: not writing host keys into it")
    p.parent.mkdir(parents=True, exist_ok=True)
    old = p.read_text(encoding="utf-8", errors="surrogateescape") if p.is_file() else ""
    lines = old.splitlines(keepends=True)
    if replace:
        lines = [kept for line in lines if (kept := _without_host(line, hostname))]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.append(f"{hostname} {key.get_name()} {key.get_base64()}\n")
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o600
    atomic_write(p, "".join(lines), mode)


def can_record(path: str) -> bool:
    """True when `path` is a regular file or does not exist yet (never /dev/null, a fifo...)."""
    p = Path(os.path.expanduser(path))
    return p.is_file() or not os.path.lexists(p)


def _without_host(line: str, hostname: str) -> str:
    """`line` without `hostname` in its name list ('' when it named only that host). Comments,
    blank lines and marker lines (@revoked, @cert-authority) are kept as they are."""
    fields = line.split()
    if not fields or fields[0].startswith(("#", "@")):
        return line
    names = fields[0].split(",")
    rest = [n for n in names if not matches(n, hostname)]
    if len(rest) == len(names):
        return line
    if not rest:
        return ""
    return line.replace(fields[0], ",".join(rest), 1)


def fingerprint(key) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class HostKeyPolicy:
    """paramiko's missing-host-key policy for one hop: refuse (keeping the key so `orch hosts
    trust` can show it), or, only when the ssh configuration says StrictHostKeyChecking
    no/accept-new, accept a new key, record it and say so on stderr. Revoked keys: refused."""

    def __init__(self, host_name: str, opts: SSHOptions, known: KnownHosts) -> None:
        self.host_name = host_name
        self.opts = opts
        self.known = known
        self.seen: tuple[str, object] | None = None

    def missing_host_key(self, client, hostname, key) -> None:  # paramiko's policy interface
        self.seen = (hostname, key)
        self.refuse_revoked(hostname, key)
        if not self.opts.checks_strictly:
            files = self.opts.known_hosts_files
            path = files[0] if files and can_record(files[0]) else None
            if path is not None:
                add_key(path, hostname, key)
            sys.stderr.write(
                f"orch: {self.host_name}: StrictHostKeyChecking "
                f"{self.opts.strict_host_key_checking} in the ssh configuration: accepted the "
                f"new host key of {hostname} ({fingerprint(key)})"
                + (f" and added it to {path}\n" if path else " for this connection only\n")
            )
            return
        raise HostKeyError(
            f"{self.host_name}: host key of {hostname} is not in known_hosts ({fingerprint(key)}); "
            f"if that is the host's key, run `orch hosts trust {self.host_name}`"
        )

    def refuse_revoked(self, hostname: str, key) -> None:
        """Raise HostKeyRevoked when `key` is marked @revoked in a known_hosts file."""
        where = self.known.revoked_by(key)
        if where is not None:
            raise HostKeyRevoked(
                f"{self.host_name}: host key of {hostname} ({fingerprint(key)}) is REVOKED "
                f"in {where}; refusing to connect"
            )
