"""`python -m gpu_worker.precheck PLAYBOOK`: on the host, in the launch's own round trip, before
tmux starts the worker: is `data.source` there and readable, with the split it names (a local
folder; a Hub name is left to the worker), are the model's local folders there, and does every
method's adapter or checkpoint list name a checkpoint that will be loaded (its kind's
`checkpoints_needed`, `methods.py`), and do post-correction stages that learn from text have it?

Standard library, yaml and the worker's own rules only (no torch): it answers in well under a
second. Relative paths are relative to the current folder (the pushed code folder, as for the
worker). Exit 0: nothing found; EXIT_PROBLEM (77) and one line per problem on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from .checkpoints import adapter_names, locate, tiny_folder
from .contract.layout import EXIT_PRECHECK, local_path
from .contract.postprocess import text_problem
from .contract.spec import MethodError, parse_methods
from .data import is_path_like, resolve_path
from .methods import kind_of

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


def data_problems(data: dict, root: str) -> list[str]:
    """`data.source` on this host: a folder that exists and can be read, holding labels.jsonl
    or a `datasets` folder with the split `data.split` (a Hub name is not checked here)."""
    source, split = data.get("source"), data.get("split", "test")
    if not isinstance(source, str):
        return []
    path = resolve_path(source, root)
    if not os.path.isdir(path):
        return (
            [f"data.source: {source}: no such folder on this host"]
            if is_path_like(source, root)
            else []
        )
    labels = os.path.join(path, "labels.jsonl")
    listing = os.path.join(path, "dataset_dict.json")
    marker = next(
        (f for f in (labels, listing, os.path.join(path, "state.json")) if os.path.isfile(f)), None
    )
    if marker is None:
        return [f"data.source: {source}: no labels.jsonl or datasets folder in it"]
    if not os.access(path, os.R_OK | os.X_OK) or not os.access(marker, os.R_OK):
        return [f"data.source: {source}: not readable by this user"]
    if marker == listing:
        try:
            splits = json.loads(open(listing, encoding="utf-8").read())["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            return [f"data.source: {source}: unreadable dataset_dict.json"]
        if split not in splits:
            return [f"data.split: '{split}' not in {source} (splits: {', '.join(splits)})"]
    return []


def postprocess_problems(methods: list, data: dict, root: str) -> list[str]:
    """Derived methods whose stages need training text: it is given, and its file is here."""
    found = [p for p in [text_problem(methods, data.get("holdout"))] if p]
    for m in methods:
        text = next((d.text for d in m.postprocess if d.text), None)
        if text and not os.path.isfile(resolve_path(text, root)):
            found.append(f"methods.{m.name}.postprocess_text: {text}: no such file on this host")
    return found


def problems(doc: dict, root: str) -> list[str]:
    """What would make the job fail at start, one line each (empty: go ahead)."""
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    found = data_problems(data, root)
    every = parse_methods(doc.get("methods"))
    found += postprocess_problems(every, data, root)
    methods = [m for m in every if m.needs_model]
    if not methods:
        return found
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    folders, model_found = _checkpoints(model, root)
    found += model_found
    if folders is None:
        return found
    names = adapter_names(folders)
    for m in methods:
        try:
            kind_of(m).checkpoints_needed(names)
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
