"""Job backends: `tmux` (SSH hosts and `local`) and `slurm` (a cluster's login node)."""

from .base import FETCH_FILES, Backend, Launch, SubmitRefused, backend_for

__all__ = ["FETCH_FILES", "Backend", "Launch", "SubmitRefused", "backend_for"]
