"""`~/.ssh/config` read as OpenSSH reads it: `resolve(alias)` asks the ssh client itself
(`ssh -G ALIAS`, which prints the options that apply and opens no connection), so `Match`,
`Include`, wildcards (`Host gpu*`), negations and `%h`/`%d`/`~` tokens mean exactly what they
mean to `ssh`. Without an ssh client, paramiko's parser is the fallback (with `Include` inlined
and the known-hosts tokens expanded here); it does not evaluate every `Match` criterion.

Which options orch uses: HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump (and
ProxyCommand without it), UserKnownHostsFile (plus GlobalKnownHostsFile, read only) and
StrictHostKeyChecking.

Home folder: ssh expands `~` and `%d` with the passwd entry's home, orch with `$HOME`. When they
differ (tests, or a user who sets HOME), orch reads `$HOME/.ssh/config` (passing `-F`), and
ssh's default known_hosts files and identity files mean those under `$HOME`; paths the config
writes out are used as ssh expands them.
"""

from __future__ import annotations

import functools
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError

USER_CONFIG = "~/.ssh/config"
PROBE = "orch-probe-7f3a.invalid"  # a name no config mentions: what applies to every host
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")


@dataclass(frozen=True)
class SSHOptions:
    """The options orch uses for one host, as resolved from the ssh configuration."""

    alias: str
    hostname: str
    user: str | None = None
    port: int = 22
    identity_files: tuple[str, ...] = ()  # only those the config names (not ssh's defaults)
    identities_only: bool = False
    proxy_jump: str | None = None
    proxy_command: str | None = None  # tokens expanded; used when there is no ProxyJump
    known_hosts_files: tuple[str, ...] = DEFAULT_KNOWN_HOSTS
    global_known_hosts_files: tuple[str, ...] = ()
    strict_host_key_checking: str = "ask"  # yes | ask | accept-new | no
    source: str = "ssh -G"

    @property
    def checks_strictly(self) -> bool:
        """False only when the ssh configuration itself says `no` or `accept-new`."""
        return self.strict_host_key_checking not in ("no", "accept-new")


def ssh_client() -> str | None:
    """The OpenSSH client binary, or None when it is not installed."""
    return shutil.which("ssh")


def resolve(alias: str, config_path: str = USER_CONFIG) -> SSHOptions:
    """The ssh options for `alias` (see the module docstring)."""
    path = Path(os.path.expanduser(config_path))
    if ssh_client() is not None:
        return _from_ssh_g(alias, path)
    return _from_paramiko(alias, path)


def is_configured(alias: str, config_path: str = USER_CONFIG) -> bool:
    """True when the ssh configuration says something about `alias` in particular: its options
    differ from those of a name no config mentions (so `Host *` alone does not count)."""
    if not Path(os.path.expanduser(config_path)).is_file():
        return False
    mine = resolve(alias, config_path)
    other = resolve(PROBE, config_path)

    def anon(opts: SSHOptions, name: str) -> SSHOptions:
        return replace(
            opts,
            alias="",
            hostname=opts.hostname.replace(name, "*"),
            known_hosts_files=tuple(p.replace(name, "*") for p in opts.known_hosts_files),
            identity_files=tuple(p.replace(name, "*") for p in opts.identity_files),
        )

    return anon(mine, alias) != anon(other, PROBE)


def literal_hosts(config_path: str = USER_CONFIG) -> set[str]:
    """Host names written literally (no wildcard, no negation) in the config and its Includes."""
    names: set[str] = set()
    for line in _inline_includes(Path(os.path.expanduser(config_path))).splitlines():
        key, _, value = line.strip().partition(" ")
        if key.lower() == "host":
            names.update(h for h in value.split() if not set(h) & set("*?!"))
    return names


# -- ssh -G -----------------------------------------------------------------------------------


def _home_differs() -> bool:
    return os.path.realpath(os.path.expanduser("~")) != os.path.realpath(_passwd_home())


def _passwd_home() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def _ssh_args(config: Path | None, system_too: bool = True) -> list[str]:
    """No `-F` (ssh reads the user's and the system's files) only for the user's own config
    under the passwd home; else `-F` that file alone (or /dev/null: no config at all)."""
    if config is None or not config.is_file():
        return ["-F", "/dev/null"]
    if system_too and not _home_differs() and config == Path(USER_CONFIG).expanduser():
        return []
    return ["-F", str(config)]


def _ssh_g(alias: str, config: Path | None, system: bool = True) -> dict[str, list[str]]:
    """`ssh -G` output as {option: [values...]}; `config` None: no config at all."""
    args = _ssh_args(config, system_too=system)
    if alias.startswith("-") or not alias or any(c.isspace() for c in alias):
        raise ConfigError(f"invalid host name {alias!r}")
    try:
        res = subprocess.run(
            [ssh_client() or "ssh", "-G", *args, "--", alias],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{config}: `ssh -G {alias}` failed: {exc}") from None
    if res.returncode != 0:
        msg = " ".join(res.stderr.split())[:300]
        raise ConfigError(f"{config}: `ssh -G {alias}` refused the configuration: {msg}")
    out: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key.lower(), []).append(value)
    return out


@functools.lru_cache(maxsize=1)
def _ssh_defaults() -> dict[str, list[str]]:
    """What ssh uses when no configuration file says anything."""
    return _ssh_g(PROBE, None)


def _own_strictness(alias: str, config: Path, first: dict[str, str]) -> str:
    """StrictHostKeyChecking as resolved, except that `no`/`accept-new` count only when the
    user's own file says so: a system-wide /etc/ssh/ssh_config saying it keeps orch strict."""
    value = _strict(first.get("stricthostkeychecking", "ask"))
    if value in ("no", "accept-new") and _ssh_args(config) == []:
        own = _ssh_g(alias, config, system=False).get("stricthostkeychecking", ["ask"])
        value = value if _strict(own[0]) == value else "ask"
    return value


def _strict(value: str) -> str:
    return {"true": "yes", "false": "no", "off": "no"}.get(value.lower(), value.lower())


def _from_ssh_g(alias: str, config: Path) -> SSHOptions:
    got, defaults = _ssh_g(alias, config), _ssh_defaults()
    first = {k: v[0] for k, v in got.items()}
    ids = tuple(got.get("identityfile", []))
    if ids == tuple(defaults.get("identityfile", [])):
        ids = ()  # ssh's own default list: let paramiko look for the default keys
    known = " ".join(got.get("userknownhostsfile", [])).split()
    default_known = " ".join(defaults.get("userknownhostsfile", [])).split()
    if known == default_known and _home_differs():
        known = [os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS]
    jump = first.get("proxyjump")
    host, user, port = first.get("hostname", alias), first.get("user"), int(first.get("port", 22))
    return SSHOptions(
        alias=alias,
        hostname=host,
        user=user,
        port=port,
        # ssh -G prints IdentityFile as written: its tokens are expanded when the key is loaded
        identity_files=tuple(_expand_tokens(p, host, user or "", port) for p in ids),
        identities_only=first.get("identitiesonly", "no") in ("yes", "true"),
        proxy_jump=None if jump in (None, "none") else jump,
        proxy_command=_proxy_command(first.get("proxycommand"), host, user or "", port),
        known_hosts_files=tuple(known),
        global_known_hosts_files=tuple(" ".join(got.get("globalknownhostsfile", [])).split()),
        strict_host_key_checking=_own_strictness(alias, config, first),
    )


# -- fallback: paramiko -----------------------------------------------------------------------


def _inline_includes(path: Path, depth: int = 0) -> str:
    """The config text with every `Include` replaced by the files it names (as ssh does,
    relative paths are under ~/.ssh; at most 16 levels deep)."""
    if depth > 16 or not path.is_file():
        return ""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key.lower() != "include":
            out.append(line)
            continue
        for pattern in value.split():
            pattern = os.path.expanduser(pattern)
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
            for name in sorted(glob.glob(pattern)):
                out.append(_inline_includes(Path(name), depth + 1))
    return "\n".join(out)


def _expand_tokens(value: str, host: str, user: str, port: int) -> str:
    """`~` and the tokens ssh expands in file names: %h host, %d home, %r remote user,
    %u local user, %p port, %l local host name, %i uid, %% a percent sign."""
    table = {
        "%h": host,
        "%d": os.path.expanduser("~"),
        "%u": _local_user(),
        "%r": user,
        "%p": str(port),
        "%l": socket.gethostname().split(".")[0],
        "%i": str(os.getuid()),
        "%%": "%",
    }
    value = re.sub(r"%[hdurpli%]", lambda m: table[m.group(0)], value)
    return os.path.expanduser(value)


def _proxy_command(value: str | None, host: str, user: str, port: int) -> str | None:
    """ProxyCommand with its tokens expanded, or None (absent or `none`)."""
    if not value or value.strip().lower() == "none":
        return None
    return _expand_tokens(value, host, user, port)


def _local_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", "")


def _from_paramiko(alias: str, config: Path) -> SSHOptions:
    from paramiko import SSHConfig  # only here: keep `orch --help` light

    try:
        found = SSHConfig.from_text(_inline_includes(config)).lookup(alias)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a config error to report
        raise ConfigError(f"{config}: cannot read ({type(exc).__name__}: {exc})") from None
    host = found.get("hostname", alias)
    port = int(found.get("port", 22))
    user = found.get("user")
    known = found.get("userknownhostsfile")
    known_files = (
        tuple(_expand_tokens(p, host, user or "", port) for p in known.split())
        if known
        else tuple(os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS)
    )
    ids = found.get("identityfile") or []
    return SSHOptions(
        alias=alias,
        hostname=host,
        user=user,
        port=port,
        identity_files=tuple(os.path.expanduser(p) for p in ids),
        identities_only=found.get("identitiesonly", "no") == "yes",
        proxy_jump=found.get("proxyjump"),
        proxy_command=_proxy_command(found.get("proxycommand"), host, user or "", port),
        known_hosts_files=known_files,
        strict_host_key_checking=_strict(found.get("stricthostkeychecking", "ask")),
        source="paramiko",
    )
