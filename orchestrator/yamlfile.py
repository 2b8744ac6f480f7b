"""Read a YAML file the user wrote (orch.yaml, a playbook) with `yaml.safe_load`, turning every
way it can be unreadable into one ConfigError line that names the file, the line and, where it
can be told, the field: missing file, invalid UTF-8, invalid YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def load_yaml(path: Path, label: str | None = None) -> Any:
    """The document in `path`, or ConfigError `label: line N: field: problem`."""
    label = label or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        lenient = data.decode("utf-8", "replace")
        where = field_at(lenient, len(data[: exc.start].decode("utf-8", "replace")))
        raise ConfigError(
            f"{label}: line {line}: {where + ': ' if where else ''}not valid UTF-8 "
            f"(byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{label}: cannot read: {at}invalid YAML: {problem}") from None


def field_at(text: str, pos: int) -> str:
    """The dotted key path (`hosts.gpu1.user`) of the YAML value holding character `pos`, or ''."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return ""
    path: list[str] = []
    while node is not None:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.start_mark.index <= pos < max(value.end_mark.index, key.end_mark.index + 1):
                    path.append(str(key.value))
                    nxt = value
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode):
            nxt = None
            for i, item in enumerate(node.value):
                if item.start_mark.index <= pos < item.end_mark.index:
                    path.append(str(i))
                    nxt = item
                    break
            node = nxt
        else:
            node = None
    return ".".join(path)
