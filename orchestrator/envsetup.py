"""`orch setup`: a worker virtual environment at `<remote_dir>/venv` on the host.

The venv sees system site-packages (GPU boxes ship CUDA torch; pip leaves it alone) and gets the
`worker` extra's requirements from orch's own package metadata (`worker.requirements`), never
from the user's project. The worker itself is shipped to `<remote_dir>/worker/<hash>/`
(`worker.ship`) and put on PYTHONPATH by every job, so the venv holds only its packages. A stamp
of python + requirements makes re-runs cheap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gpu_worker.contract.layout import VENV_DIR

from . import worker
from .shell import join, quote, remote, trusted
from .transport import Host


@dataclass(frozen=True)
class SetupResult:
    """Whether the venv was (re)built, and with which requirements."""

    host: str
    venv: str
    requirements: list[str]
    changed: bool


def setup_env(host: Host) -> SetupResult:
    """Ship the worker and create or update the host's worker venv; a no-op when nothing
    changed."""
    worker.ship(host)
    reqs = worker.requirements()
    stamp = hashlib.sha256("\n".join([host.config.python, *reqs]).encode()).hexdigest()
    venv = remote(host.remote_dir, VENV_DIR)
    py = quote(host.config.python)
    script = trusted(f"""set -e
mkdir -p {remote(host.remote_dir)}
if [ -x {venv}/bin/python ] && [ "$(cat {venv}/.orch-setup 2>/dev/null)" = {quote(stamp)} ]; then
  echo unchanged; exit 0
fi
[ -x {venv}/bin/python ] || {py} -m venv --system-site-packages {venv}
{venv}/bin/python -m pip install -q --disable-pip-version-check {join(reqs)}
echo {quote(stamp)} > {venv}/.orch-setup
echo changed
""")
    res = host.run(script, timeout=3600)
    return SetupResult(
        host=host.name,
        venv=f"{host.remote_dir}/venv",
        requirements=reqs,
        changed=res.text.strip().endswith("changed") and "unchanged" not in res.text,
    )
