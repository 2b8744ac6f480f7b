"""Playbooks: YAML job descriptions under `playbooks/`, loaded with `yaml.safe_load` only.

A playbook names the model (`model.base`, `model.checkpoints`), the data and the methods to run.
Relative local paths in a playbook are relative to the pushed code folder on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gpu_worker.schema import did_you_mean

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


def _is_path(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../"))


def model_paths(config: Config, name: str) -> list[str]:
    """Local paths (files, folders or globs) a playbook's model needs on the host."""
    model = load_raw(config, name).get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{name}: model: expected a mapping with base and checkpoints")
    paths = []
    base = model.get("base")
    if isinstance(base, str) and _is_path(base):
        paths.append(base)
    ckpts = model.get("checkpoints") or []
    for c in [ckpts] if isinstance(ckpts, str) else ckpts:
        if isinstance(c, str):
            paths.append(c)
    return paths


DEFAULT_COMMAND = "{python} -m gpu_worker run {playbook} --out {out}"


@dataclass(frozen=True)
class Playbook:
    """A playbook with `--set` overrides applied; `data` is what the worker receives."""

    name: str
    data: dict
    overrides: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The command template: playbook `command`, else the gpu_worker default."""
        return str(self.data.get("command") or DEFAULT_COMMAND)

    def to_yaml(self) -> str:
        """The resolved playbook as YAML."""
        return yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


def apply_override(data: dict, assignment: str, label: str) -> None:
    """Apply one `key.sub=value` (value parsed as YAML) to `data`, in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected key=value, e.g. data.n_samples=20")
    parts = key.split(".")
    node = data
    if len(parts) == 2 and _known_setting(*parts) and isinstance(data.get(parts[0]) or {}, dict):
        data[parts[0]] = data.get(parts[0]) or {}  # a known setting the playbook leaves default
        data[parts[0]].setdefault(parts[1], None)
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[: depth + 1])
            choices = list(node) if isinstance(node, dict) else []
            hint = did_you_mean(part, choices)
            raise ConfigError(f"--set {key}: {label} has no key '{where}'{hint}")
        if last:
            try:
                node[part] = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                node[part] = raw
        else:
            node = node[part]


def _known_setting(section: str, key: str) -> bool:
    """True for a worker setting with a default (`scoring.bootstrap`), which `--set` may add."""
    from gpu_worker.runner import SECTIONS

    keys = SECTIONS.get(section)
    return isinstance(keys, set) and key in keys


def resolve(config: Config, name: str, overrides: tuple[str, ...] = ()) -> Playbook:
    """Load a playbook and apply `--set` overrides (playbook < command line)."""
    path = playbook_path(config, name)
    data = load_raw(config, name)
    for assignment in overrides:
        apply_override(data, assignment, path.name)
    check_names(data, path)
    if "command" not in data:  # the worker runs it: check it here, before anything is pushed
        from gpu_worker.runner import PlaybookError, parse_playbook

        try:
            parse_playbook(data, path.stem)
        except PlaybookError as exc:
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


def render_command(template: str, playbook_file: str, out_dir: str) -> str:
    """Fill `{python}`, `{playbook}` and `{out}`; the paths arrive already shell-quoted."""
    return (
        template.replace("{python}", '"$ORCH_PYTHON"')
        .replace("{playbook}", playbook_file)
        .replace("{out}", out_dir)
    )
