"""The one interface every job backend implements, and the list of backends.

A backend starts runs on a host and reports on them; it never pushes code (jobs.py does, first).
- `submit(host, runs, command, allow_concurrent)`: start one job per `Launch` (or one job array
  covering them); returns the scheduler's id for each run (a tmux pane pid, a Slurm job id).
- `poll(host, run_ids)`: the `RunStatus` of the named runs (None: every run on the host) in one
  round trip to the host, however many runs.
- `cancel(host, run_id, grace)`: stop one run and mark it cancelled; returns what happened
  (a `CancelOutcome`: cancelled, finished, missing).
- `follow_until(host, run_id)`: shell text giving a pid that ends with the run, for `tail --pid`.
Every script a backend sends is `Quoted` text built with `orchestrator/shell.py`.
- `FETCH_FILES`: the files of a run folder that `orch fetch` brings back.

Both backends keep the same remote layout: `<remote_dir>/runs/<run_id>/` holds run.json,
playbook.yaml, log.txt, progress.json, predictions.jsonl, results.json and exit_code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..config import HostConfig
from ..errors import OrchError
from ..shell import Quoted
from ..states import CancelOutcome

FETCH_FILES = (
    "results.json",
    "predictions.jsonl",
    "log.txt",
    "playbook.yaml",
    "run.json",
    "exit_code",
)


@dataclass(frozen=True)
class Launch:
    """One run to start: its id, the resolved playbook text, the record written as run.json, and
    shell lines checking the playbook on the host before the job starts (empty: none)."""

    run_id: str
    playbook_yaml: str
    record: dict
    precheck: str = ""


class SubmitRefused(OrchError):
    """The scheduler refused the job (sbatch failed): nothing runs, the run is recorded failed."""


class Backend(ABC):
    """Start, watch and stop runs on one kind of host (see the module docstring)."""

    name: str = ""

    @abstractmethod
    def submit(
        self, host, runs: list[Launch], command: Quoted, allow_concurrent: bool
    ) -> list[str]:
        """Start the runs; return one scheduler id per run."""

    @abstractmethod
    def poll(self, host, run_ids: list[str] | None) -> list:
        """Status of the named runs (or all) on this host, in one round trip."""

    @abstractmethod
    def cancel(self, host, run_id: str, grace: float) -> CancelOutcome:
        """Stop one run; cancelled, finished or missing."""

    @abstractmethod
    def follow_until(self, host, run_id: str) -> Quoted:
        """Shell words giving a pid that lives exactly as long as the run (for `tail --pid`)."""


def backend_for(host: HostConfig) -> Backend:
    """The backend named by the host's `backend:` setting (tmux unless told otherwise)."""
    if host.backend == "slurm":
        from .slurm import SlurmBackend

        return SlurmBackend()
    from .tmux import TmuxBackend

    return TmuxBackend()
