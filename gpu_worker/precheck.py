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

from .checkpoints import adapter_names, locate, tiny_folder
from .contract.layout import EXIT_PRECHECK, local_path
from .contract.spec import KINDS, MethodError, parse_methods
from .decoding import resolve_adapter, resolve_checkpoints

EXIT_PROBLEM = EXIT_PRECHECK


def _checkpoints(model: dict, root: str) -> tuple[list[str] | None, list[str]]:
    """(checkpoint folders, problems); folders None when they cannot be known yet."""
    tiny = tiny_folder(model, root)
    if tiny is not None and not (tiny / "checkpoints").is_dir():
        return None, []  # the tiny model is built on first use
    problems = []
    base = local_path(model.get("base"), root) if tiny is None else None
    if base is not None and not os.path.isdir(base):
        problems.append(f"model.base: {model['base']}: no such folder on this host")
    try:
        return locate(model, root).checkpoints, problems
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
