"""Job backends: `tmux` (SSH hosts and `local`) and `slurm` (a cluster's login node), and the
registry choosing one for a host (`backend_for`). The interface and the one launch sequence are
in `base.py`."""

from __future__ import annotations

from ..config import HostConfig
from .base import FETCH_FILES, Backend, Launch, Options, SubmitRefused


def backend_for(host: HostConfig) -> Backend:
    """The backend named by the host's `backend:` setting (tmux unless told otherwise)."""
    if host.backend == "slurm":
        from .slurm import SlurmBackend

        return SlurmBackend()
    from .tmux import TmuxBackend

    return TmuxBackend()


__all__ = ["FETCH_FILES", "Backend", "Launch", "Options", "SubmitRefused", "backend_for"]
