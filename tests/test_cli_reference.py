"""README.md's command reference is generated from `--help`: stale text fails this test."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cli_reference.py"


def _module():
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_command_reference_is_current():
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr  # fix: python scripts/cli_reference.py


def test_every_command_and_option_is_in_the_reference_and_edits_are_caught():
    mod = _module()
    text = mod.README.read_text(encoding="utf-8")
    ref = mod.reference()
    for heading in ("### `orch run`", "### `orch hosts trust`", "### `orch publish`"):
        assert heading in ref
    assert "--allow-dirty-readme" in ref and "Example: orch fetch" in ref
    assert mod.updated(text) == text
    head, section = text.split(mod.START)
    stale = head + mod.START + section.replace("--allow-dirty-readme", "--allow-dirty")
    assert stale != text and mod.updated(stale) == text
    assert mod.updated("# x\n").endswith(ref + "\n") and "## Command reference" in mod.updated("")
