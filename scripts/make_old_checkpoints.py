"""Make the committed old-stack fixtures under `tests/fixtures/oldstack/` (CI never runs this).

    python scripts/make_old_checkpoints.py [--venvs DIR] [--out tests/fixtures/oldstack]

For each stack the Odia user trained with it makes (or reuses) a venv under `--venvs` holding
`torch==2.13.0` (installed first: pip takes the local CPU build) and then that stack's
transformers/peft/pillow/safetensors from PyPI, and runs `scripts/oldstack_builder.py` inside it:
a tiny Qwen2.5-VL saved as that stack saves it, LoRA checkpoints made with the user's recipe, and
`expected.json` with the strings that stack's own peft `generate` gives on 8 images of
`data/sample`. `tests/test_oldstack.py` checks that the worker decodes them identically.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "scripts" / "oldstack_builder.py"
TORCH = "torch==2.13.0"
# stack folder -> (pip requirements after torch, variants as VARIANT:FLAGS)
STACKS = {
    "t451": (
        ["transformers>=4.51,<4.52", "peft>=0.15,<0.16", "pillow", "safetensors", "numpy<3"],
        ["safetensors:chat", "bin:bin"],
    ),
    "t457": (
        ["transformers>=4.57,<4.58", "peft>=0.18,<0.19", "pillow", "safetensors", "numpy<3"],
        ["resized:resize", "bin:bin", "safetensors:"],
    ),
}


def venv(folder: Path, requirements: list[str]) -> Path:
    """The venv's python, created and filled on first use."""
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, *requirements], check=True)
    return python


def versions(python: Path) -> str:
    code = "import torch, transformers, peft; print(transformers.__version__, peft.__version__, "
    code += "torch.__version__)"
    t, p, torch = subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return f"transformers {t} + peft {p} (torch {torch})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venvs", default=str(ROOT / ".orch-cache" / "oldstack"))
    parser.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "oldstack"))
    parser.add_argument("--images", default=str(ROOT / "data" / "sample"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for stack, (requirements, variants) in STACKS.items():
        python = venv(Path(args.venvs) / stack, requirements)
        subprocess.run([str(python), str(BUILDER), str(out / stack), args.images, *variants],
                       check=True)  # fmt: skip
        lines.append(f"- `{stack}/`: {versions(python)}; variants {', '.join(variants)}")
    (out / "README.md").write_text(
        "# Old-stack fixtures\n\nMade by `python scripts/make_old_checkpoints.py` "
        "(`scripts/oldstack_builder.py` run inside a venv per stack) with the Odia user's "
        "LoRA recipe; `expected.json` in each variant holds that stack's own peft `generate` "
        "strings. Do not edit by hand.\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
