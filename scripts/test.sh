#!/usr/bin/env bash
# Install what the tests need, then run the quality gate and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,worker
python3 -m ruff check .
python3 -m ruff format --check .
# two workers: most tests wait on hosts (sshd, tmux, Slurm), so a 2-core machine runs two at once;
# ORCH_TEST_WORKERS=0 runs them in this process (one after the other)
python3 -m pytest -q -n "${ORCH_TEST_WORKERS:-2}" "$@"
