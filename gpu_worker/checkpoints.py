"""Checkpoint folders and the adapter names they get. Standard library only, so the pre-launch
check (`precheck.py`) answers in milliseconds without importing torch; `engine.py` uses the same
functions when it loads them."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .contract.layout import local_path


def expand_checkpoints(spec: str | list[str] | None, root: str | None = None) -> list[str]:
    """Checkpoint folders from a list, a glob or a folder holding `checkpoint-*`, in step order."""
    if not spec:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    found: list[str] = []
    for item in items:
        path = os.path.expanduser(item)
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "adapter_config.json")):
            path = os.path.join(path, "checkpoint-*")
        if not glob.has_magic(path) and not os.path.exists(path):
            raise FileNotFoundError(f"{item}: no such checkpoint folder")
        matches = sorted(glob.glob(path), key=_step) if glob.has_magic(path) else [path]
        if not matches:
            raise FileNotFoundError(f"no checkpoints match {item}")
        found.extend(matches)
    for path in found:
        if not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise FileNotFoundError(f"{path}: not a LoRA checkpoint (no adapter_config.json)")
    return found


def _step(path: str) -> tuple[int, str]:
    tail = Path(path).name.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 1 << 30, path)


def adapter_names(checkpoints: list[str]) -> list[str]:
    """The adapter name of each checkpoint: its folder name, or `parent/name` when two clash."""
    names = [Path(c).name for c in checkpoints]
    if len(set(names)) != len(names):
        names = [f"{Path(c).parent.name}/{Path(c).name}".replace(".", "_") for c in checkpoints]
    return names


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def adapter_identity(checkpoints: list[str]) -> list[dict]:
    """`{name, sha256}` of each checkpoint: its adapter name and a 16-hex content hash of its
    adapter files (config and weights, not optimizer state), so results name what was scored."""
    import hashlib

    out = []
    for name, path in zip(adapter_names(checkpoints), checkpoints, strict=True):
        digest = hashlib.sha256()
        for file in ADAPTER_FILES:
            full = os.path.join(path, file)
            if os.path.isfile(full):
                digest.update(f"{file}\0".encode())
                with open(full, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        digest.update(block)
        out.append({"name": name, "sha256": digest.hexdigest()[:16]})
    return out


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded faithfully (a tensor that lands nowhere, trained
    embeddings...): one line naming the file and the key; the run does not start (exit 2)."""


@dataclass(frozen=True)
class ModelPaths:
    """The base model (a hub name or an absolute folder) and its checkpoint folders."""

    base: str | None
    checkpoints: list[str]


def tiny_folder(model: dict, root: str) -> Path | None:
    """The folder of `model.tiny` (the small local model, built on first use), if set."""
    tiny = model.get("tiny")
    if not tiny:
        return None
    folder = Path(os.path.expanduser(str(tiny)))
    return folder if folder.is_absolute() else Path(root) / folder


def locate(model: dict, root: str) -> ModelPaths:
    """The base and checkpoint folders a `model` section names (FileNotFoundError when a
    checkpoint is missing); a `tiny` model must be built already. With `tiny`, its base is the
    base, and its own checkpoints are used only when `model.checkpoints` names none."""
    tiny = tiny_folder(model, root)
    if tiny is not None:
        named = model.get("checkpoints")
        found = expand_checkpoints(named, root) if named else None
        return ModelPaths(
            str(tiny / "base"), found or expand_checkpoints(str(tiny / "checkpoints"))
        )
    base = model.get("base")
    local = local_path(base, root)
    return ModelPaths(local or base, expand_checkpoints(model.get("checkpoints"), root))
