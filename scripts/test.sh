#!/usr/bin/env bash
# Install what the tests need, then run the quality gate and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,worker
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -q "$@"
