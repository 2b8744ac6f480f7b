"""Playbooks: YAML job descriptions under `playbooks/`, loaded with `yaml.safe_load` only.

A playbook names the model (`model.base`, `model.checkpoints`), the data and the methods to run.
Relative local paths in a playbook are relative to the pushed code folder on the host.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .config import Config
from .errors import ConfigError


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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot read: {str(exc).splitlines()[0]}") from exc
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
