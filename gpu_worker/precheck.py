"""`python -m gpu_worker.precheck PLAYBOOK`: on the host, in the launch's own round trip, before
tmux starts the worker: are the model's local folders there, and does every method's adapter
or checkpoint list name a checkpoint that will be loaded?

Standard library, yaml and the worker's own rules only (no torch): it answers in well under a
second. Relative paths are relative to the current folder (the pushed code folder, as for the
worker). Exit 0: nothing found; EXIT_PROBLEM (77) and one line per problem on stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from .checkpoints import adapter_names, expand_checkpoints
from .decoding import KINDS, MethodError, parse_methods, resolve_adapter, resolve_checkpoints

EXIT_PROBLEM = 77


def _local(value: object, root: str) -> str | None:
    """The local path a model field names (hub names like `Qwen/...` are not local)."""
    if not isinstance(value, str) or not value.startswith((".", "/", "~")):
        return None
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.join(root, path)


def _checkpoints(model: dict, root: str) -> tuple[list[str] | None, list[str]]:
    """(checkpoint folders, problems); folders None when they cannot be known yet."""
    tiny = model.get("tiny")
    if tiny:
        folder = Path(_local(str(tiny), root) or os.path.join(root, str(tiny)))
        if not (folder / "checkpoints").is_dir():
            return None, []  # the tiny model is built on first use
        return expand_checkpoints(str(folder / "checkpoints")), []
    problems = []
    base = _local(model.get("base"), root)
    if base is not None and not os.path.isdir(base):
        problems.append(f"model.base: {model['base']}: no such folder on this host")
    try:
        return expand_checkpoints(model.get("checkpoints"), root), problems
    except FileNotFoundError as exc:
        return None, [*problems, f"model.checkpoints: {exc}"]


def problems(doc: dict, root: str) -> list[str]:
    """What would make the job fail at start, one line each (empty: go ahead)."""
    methods = [m for m in parse_methods(doc.get("methods")) if m.needs_model]
    if not methods:
        return []
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    folders, found = _checkpoints(model, root)
    if folders is None:
        return found
    names = adapter_names(folders)
    for m in methods:
        try:
            if "adapter" in KINDS[m.kind]:
                resolve_adapter(m, names)
            else:
                resolve_checkpoints(m, names)
        except MethodError as exc:
            found.append(str(exc))
    return found


def main(argv: list[str]) -> int:
    """Check the playbook file `argv[0]`; print problems; return the exit status."""
    doc = yaml.safe_load(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        found = problems(doc, os.getcwd())
    except MethodError as exc:
        found = [str(exc)]
    for line in found:
        print(line)
    return EXIT_PROBLEM if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
