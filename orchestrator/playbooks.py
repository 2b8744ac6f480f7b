"""Playbooks: YAML job descriptions under `playbooks/`, loaded with `yaml.safe_load` only.

A playbook names the model (`model.base`, `model.checkpoints`), the data and the methods to run.
Relative local paths in a playbook are relative to the pushed code folder on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gpu_worker import spec, trainspec
from gpu_worker.checkpoints import model_paths

from .config import Config
from .errors import ConfigError
from .names import check_name
from .yamlfile import load_yaml


def playbook_path(config: Config, name: str) -> Path:
    """The file of a playbook given by name (`quickwin`) or path (`playbooks/quickwin.yaml`)."""
    candidates = [Path(name), config.root / name, config.root / "playbooks" / f"{name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(p.stem for p in (config.root / "playbooks").glob("*.yaml"))
    raise ConfigError(
        f"playbook '{name}' not found; known: {', '.join(known) or 'none in playbooks/'}"
    )


def load_raw(config: Config, name: str) -> dict:
    """The playbook as a mapping, or a one-line ConfigError naming the file."""
    path = playbook_path(config, name)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping at the top level")
    return data


def local_model_paths(config: Config, name: str) -> list[str]:
    """Local paths (folders or globs) a playbook's model needs on the host."""
    model = load_raw(config, name).get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{name}: model: expected a mapping with base and checkpoints")
    return model_paths(model)


DEFAULT_COMMAND = "{python} -m gpu_worker run {playbook} --out {out}"
TRAIN_COMMAND = "{python} -m gpu_worker train {playbook} --out {out}"  # a playbook with `train:`


@dataclass(frozen=True)
class Playbook:
    """A playbook with `--set` overrides applied; `data` is what the worker receives."""

    name: str
    data: dict
    overrides: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command template: playbook `command`, else gpu_worker's `train` for a playbook
        with a `train:` section, else gpu_worker's `run`."""
        if self.data.get("command"):
            return str(self.data["command"])
        return TRAIN_COMMAND if trainspec.is_train(self.data) else DEFAULT_COMMAND

    def to_yaml(self) -> str:
        """The resolved playbook as YAML."""
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


def apply_override(data: dict, assignment: str, label: str) -> None:
    """Apply one `key.sub=value` to `data`, in place. The key must name a setting of the
    playbook spec (`gpu_worker.spec.check_key`) and the value must be valid YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected key=value, e.g. data.n_samples=20")
    parts = key.split(".")
    problem = spec.check_key(data, parts)
    if problem:
        raise ConfigError(f"--set {key}: {label} has {problem}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({first})") from None
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}  # a section the playbook leaves at its defaults
        node = node[part]
    node[parts[-1]] = value


def resolve(config: Config, name: str, overrides: tuple[str, ...] = ()) -> Playbook:
    """Load a playbook, apply `--set` overrides (playbook < command line) and resolve it into
    the full spec the worker receives (every default filled in, validated here, before anything
    is pushed). A playbook with its own `command` is sent as written."""
    path = playbook_path(config, name)
    data = load_raw(config, name)
    for assignment in overrides:
        apply_override(data, assignment, path.name)
    check_names(data, path)
    if "command" not in data:
        try:
            if trainspec.is_train(data):
                data = trainspec.parse_train(data, path.stem).doc
            else:
                data = spec.parse_playbook(data, path.stem).doc
        except spec.PlaybookError as exc:
            raise ConfigError(f"{path.name}: {exc}") from None
    return Playbook(name=path.stem, data=data, overrides=tuple(overrides))


def check_names(data: dict, path: Path) -> None:
    """The playbook's name and method names become file names and README text: refuse unsafe
    ones here, before anything is sent, naming the file and field."""
    check_name(path.stem, f"{path.name}: file name")
    if "name" in data:
        check_name(data["name"], f"{path.name}: name")
    methods = data.get("methods")
    if isinstance(methods, dict):
        for method in methods:
            check_name(method, f"{path.name}: methods")
