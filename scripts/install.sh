#!/usr/bin/env bash
# Install what orch needs on this machine: Debian packages (only when missing; as root, else the
# command to run is printed), the CPU build of torch, then orch with the given extras.
# Usage: bash scripts/install.sh [EXTRAS]   e.g. bash scripts/install.sh dev,worker
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-worker}

missing=()
for pair in sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client tmux:tmux \
            rsync:rsync git:git tesseract:tesseract-ocr ip:iproute2 ss:iproute2 ps:procps \
            pgrep:procps flock:util-linux chromium:chromium \
            munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
  cmd=${pair%%:*}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${pair#*:}")
done
tesseract --list-langs 2>/dev/null | grep -qx ori || missing+=(tesseract-ocr-ori)
tesseract --list-langs 2>/dev/null | grep -qx eng || missing+=(tesseract-ocr-eng)  # preflight tests
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
fi

pip=(python3 -m pip install -q --disable-pip-version-check)
# The CPU build of torch first: left to the worker extra, pip would pull a multi-GB CUDA build.
python3 -c "import torch" 2>/dev/null || "${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[$extras]"
