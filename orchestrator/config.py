"""Load `orch.yaml` into validated, frozen objects; no I/O beyond reading the file (resolving
`--host` values, ~/.ssh/config aliases included, is `hosts.Hosts`).

Every error names the file and the field: ``orch.yaml: hosts.gpu1.port: expected an integer``.
Precedence is built-in defaults < orch.yaml (< playbook < ``--set``, applied in playbooks.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker.contract.hints import did_you_mean

from .errors import ConfigError
from .yamlfile import load_yaml

CONFIG_NAME = "orch.yaml"
LOCAL_HOST = "local"
DEFAULT_TIMEOUT = 15.0
DEFAULT_FETCH_MAX_MB = 4096.0

STARTER = """\
# orch.yaml: where orch runs your jobs and where it publishes results.
# Precedence: built-in defaults < this file < playbook < `orch run --set key=value`.

defaults:
  host: local              # `local` is built in: runs on this machine, no SSH
  results_dir: results     # where `orch fetch` puts each run's files
  readme: README.md        # where `orch publish` writes the results table
  # playbook: quickwin     # checked by `orch doctor` (model and checkpoints present)

hosts:
  gpu1:                    # use as `--host gpu1`; a ~/.ssh/config alias works too
    host: 203.0.113.10     # address or ~/.ssh/config alias (default: the name, gpu1)
    user: root
    port: 22
    identity_file: ~/.ssh/id_ed25519
    remote_dir: /root/odia_ocr   # code/, runs/ and venv/ live here
    python: python3        # interpreter used by `orch setup` to make <remote_dir>/venv
    timeout: 15            # seconds: connect, banner, auth, dead-link detection, commands
    # hourly_rate: 0.79    # price per hour, for cost in `orch status`
    # env:                 # exported for every job on this host
    #   HF_HOME: /root/.cache/huggingface
  # hpc:                   # a Slurm cluster's login node (see docs/scaling.md)
  #   host: login.cluster.example.edu
  #   backend: slurm
  #   remote_dir: /scratch/me/orch
  #   slurm: {partition: gpu, gres: "gpu:1", time: "02:00:00", mem: 32G}

# groups:
#   pair: [gpu1, gpu2]     # `orch run validation --host pair`: one shard per host

# push:
#   include: [data/sample]   # pushed even if git ignores it (all tracked files are pushed)

# fetch:
#   max_mb: 4096           # `orch fetch` refuses a run whose files are larger than this

# notify: 'notify-send "orch: $ORCH_RUN_ID $ORCH_STATE (CER $ORCH_CER)"'  # when a run ends

# hub:
#   repo_id: your-name/qwen-odia-ocr
#   repo_type: model
"""


SLURM_FIELDS = ("partition", "account", "time", "mem", "gres", "gpus", "cpus_per_task")
BACKENDS = ("tmux", "slurm")


@dataclass(frozen=True)
class SlurmConfig:
    """Resources for `sbatch` on a `backend: slurm` host (a playbook's `slurm:` overrides them)."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    mem: str | None = None
    gres: str | None = None
    gpus: str | None = None
    cpus_per_task: int | None = None


@dataclass(frozen=True)
class HostConfig:
    """One place jobs run: an SSH host, or the built-in `local` host when `is_local`."""

    name: str
    hostname: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    remote_dir: str = "orch"
    python: str = "python3"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    hourly_rate: float | None = None
    known_hosts: str | None = None  # None: the ssh configuration's UserKnownHostsFile
    is_local: bool = False
    backend: str = "tmux"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass(frozen=True)
class Defaults:
    """Project-wide defaults from the `defaults:` section."""

    host: str = LOCAL_HOST
    results_dir: str = "results"
    readme: str = "README.md"
    playbook: str | None = None


@dataclass(frozen=True)
class HubConfig:
    """Where `orch publish` sends the model card."""

    repo_id: str
    repo_type: str = "model"


@dataclass(frozen=True)
class Config:
    """The whole project configuration; `root` is the folder holding orch.yaml."""

    root: Path
    path: Path | None
    hosts: dict[str, HostConfig]
    defaults: Defaults
    push_include: tuple[str, ...] = ()
    hub: HubConfig | None = None
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fetch_max_mb: float = DEFAULT_FETCH_MAX_MB  # `fetch: {max_mb: ...}`: a run's files, at most
    notify: str | None = None  # a local shell command run when a run ends (see notify.py)

    def host_list(self, value: str | None) -> list[HostConfig]:
        """`Hosts(config).host_list(value)` (kept for callers that hold only a Config)."""
        from .hosts import Hosts

        return Hosts(self).host_list(value)

    def host(self, name: str | None) -> HostConfig:
        """`Hosts(config).host(name)` (kept for callers that hold only a Config; a command
        resolves its hosts once through its own `Hosts`)."""
        from .hosts import Hosts

        return Hosts(self).host(name)


def find_config(start: Path | None = None) -> Path | None:
    """The nearest orch.yaml in `start` or a parent folder, or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def load_config(path: Path | None = None) -> Config:
    """Load and validate orch.yaml (found upwards from the cwd when `path` is None)."""
    path = path or find_config()
    if path is None:
        return Config(root=Path.cwd().resolve(), path=None, hosts={}, defaults=Defaults())
    path = path.resolve()
    label = path.name
    raw = load_yaml(path, label) or {}
    v = _Validator(label)
    top = v.mapping(raw, "", {"hosts", "defaults", "push", "hub", "groups", "fetch", "notify"})
    defaults = Defaults(**v.section(top.get("defaults"), "defaults", _DEFAULT_FIELDS))
    hosts = {}
    for name, body in v.mapping(top.get("hosts") or {}, "hosts", None).items():
        fields = v.section(body, f"hosts.{name}", _HOST_FIELDS)
        # no `host:`: the name itself is the address or ~/.ssh/config alias (as for `ssh NAME`)
        fields["hostname"] = fields.pop("host", "localhost" if name == LOCAL_HOST else str(name))
        if name == LOCAL_HOST:
            fields["is_local"] = True
            rd = Path(fields.get("remote_dir", ".orch/local")).expanduser()
            fields["remote_dir"] = str(rd if rd.is_absolute() else path.parent / rd)
        if "slurm" in fields:
            where = f"hosts.{name}.slurm"
            fields["slurm"] = SlurmConfig(**v.section(fields["slurm"], where, _SLURM))
        hosts[str(name)] = HostConfig(name=str(name), **fields)
    groups = {}
    for name, members in v.mapping(top.get("groups") or {}, "groups", None).items():
        try:
            groups[str(name)] = _str_list(members)
        except TypeError as exc:
            raise v.fail(f"groups.{name}", str(exc)) from None
    push = v.section(top.get("push"), "push", {"include": _str_list})
    fetch = v.section(top.get("fetch"), "fetch", {"max_mb": _positive})
    hub_fields = v.section(top.get("hub"), "hub", {"repo_id": _str, "repo_type": _str})
    if hub_fields and "repo_id" not in hub_fields:
        raise ConfigError(f"{label}: hub.repo_id: required when hub: is present")
    return Config(
        root=path.parent,
        path=path,
        hosts=hosts,
        defaults=defaults,
        push_include=tuple(push.get("include", ())),
        hub=HubConfig(**hub_fields) if hub_fields else None,
        groups=groups,
        fetch_max_mb=fetch.get("max_mb", DEFAULT_FETCH_MAX_MB),
        notify=_notify(v, top.get("notify")),
    )


def _notify(v: _Validator, value: Any) -> str | None:
    """The `notify:` command (a shell command line), or None when there is none."""
    if value is None:
        return None
    try:
        return _command(value)
    except TypeError as exc:
        raise v.fail("notify", str(exc)) from None


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _command(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(
            "expected a shell command (a non-empty string), e.g. "
            "notify: 'notify-send \"orch: $ORCH_RUN_ID $ORCH_STATE\"'"
        )
    if "\0" in value:
        raise TypeError("the command contains a NUL character")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    if not 0 < value < 65536:
        raise TypeError("expected an integer between 1 and 65535")
    return value


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a positive number, got {value!r}")
    if not math.isfinite(value):  # .inf would wait forever; .nan compares false with everything
        raise TypeError(f"expected a finite number, got {value!r}")
    if value <= 0:
        raise TypeError(f"expected a positive number, got {value!r}")
    return float(value)


MAX_TIMEOUT_S = 86400.0  # a day: beyond it a deadline overflows the clock (time_t)


def _timeout(value: Any) -> float:
    seconds = _positive(value)
    if seconds > MAX_TIMEOUT_S:
        raise TypeError(f"expected at most {MAX_TIMEOUT_S:g} seconds (one day), got {value!r}")
    return seconds


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("expected a mapping of NAME: value")
    out = {}
    for k, val in value.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise TypeError(f"'{k}' is not a valid environment variable name")
        if isinstance(val, (dict, list)) or val is None:
            raise TypeError(f"{k}: expected a string or number")
        out[k] = str(val)
    return out


def _backend(value: Any) -> str:
    if value not in BACKENDS:
        raise TypeError(f"expected one of {', '.join(BACKENDS)}{_hint(value, BACKENDS)}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError("expected a positive integer")
    return value


def _word(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value):
        raise TypeError("expected a string")
    return str(value)


_SLURM = {k: _word for k in SLURM_FIELDS} | {"cpus_per_task": _count}

_HOST_FIELDS = {
    "host": _str,
    "user": _str,
    "port": _int,
    "identity_file": _str,
    "remote_dir": _str,
    "python": _str,
    "env": _env,
    "timeout": _timeout,
    "hourly_rate": _positive,
    "known_hosts": _str,
    "backend": _backend,
    "slurm": lambda value: value,  # checked field by field in load_config
}
_DEFAULT_FIELDS = {"host": _str, "results_dir": _str, "readme": _str, "playbook": _str}


_hint = did_you_mean


class _Validator:
    """Checks mappings against field tables and raises `file: path.field: problem`."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(
            f"{self.label}: {where}: {problem}" if where else f"{self.label}: {problem}"
        )

    def mapping(self, value: Any, where: str, allowed: set[str] | None) -> dict:
        if not isinstance(value, dict):
            return_where = where or "top level"
            raise self.fail(return_where, "expected a mapping")
        for key in value:
            if allowed is not None and key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else str(key),
                    f"unknown key{_hint(key, allowed)}; allowed: {', '.join(sorted(allowed))}",
                )
        return value

    def section(self, value: Any, where: str, fields: dict) -> dict:
        if value is None:
            return {}
        out = {}
        for key, val in self.mapping(value, where, set(fields)).items():
            try:
                out[key] = fields[key](val)
            except TypeError as exc:
                raise self.fail(f"{where}.{key}", str(exc)) from None
        return out
