"""The worker/orchestrator boundary (DESIGN.md "Packages and their rooms"): the orchestrator
imports nothing of the worker but `gpu_worker.contract`, the contract is standard library only,
and importing every orchestrator module loads none of the heavy packages."""

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "peft", "numpy", "jiwer", "rapidfuzz", "datasets", "PIL")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in a file, relative ones resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out += [(f"{base}.{a.name}" if base else a.name, node.lineno) for a in node.names]
    return out


def test_orchestrator_imports_only_the_contract_of_the_worker():
    bad = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in sorted((REPO / "orchestrator").rglob("*.py"))
        for name, line in _imports(path)
        if name.split(".")[0] == "gpu_worker" and not name.startswith("gpu_worker.contract")
    ]
    assert bad == []


def test_the_contract_is_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"__future__", "gpu_worker"}
    bad = [
        f"{path.name}:{line}: {name}"
        for path in sorted((REPO / "gpu_worker" / "contract").rglob("*.py"))
        for name, line in _imports(path)
        if name.split(".")[0] not in allowed
        or (name.startswith("gpu_worker") and not name.startswith("gpu_worker.contract"))
    ]
    assert bad == []


def test_importing_every_orchestrator_module_loads_no_heavy_package():
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "orchestrator").rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert len(modules) > 25
    assert json.loads(res.stdout) == []


def test_names_the_contract_states_are_the_ones_the_worker_implements():
    from gpu_worker import ensemble, metrics
    from gpu_worker.contract import spec

    assert tuple(ensemble.RULES) == spec.RULES
    for form in spec.NORMAL_FORMS:
        metrics.normalize("a", form)
