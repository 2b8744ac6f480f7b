"""`notify:` in orch.yaml: a local command run once when a run succeeds, fails or is lost.

Contract:
- Armed at launch (`RunRecord.notify_pending`, also for a resumed run); fired by whichever
  command first sees the run's end through the status path (`orch status`, `wait`, `run
  --follow`, `logs -f`, `fetch`, `publish --fetch`), at most once per run: the flag is cleared in
  the local record before the command starts. Runs adopted from a host, and records written
  before this existed, are never armed, so configuring `notify:` does not replay old runs. A
  cancelled or skipped run disarms without a notification (the user cancelled it, or the run it
  waited for already notified).
- The command runs through `sh -c` in the project root, with a 60-second limit; its output goes
  to the terminal (stderr). A failing or slow command is one warning line, never a failure of the
  command that fired it.
- Its environment: the user's own, minus every variable whose name looks like a credential
  (`SECRET_WORDS`: HF_TOKEN, AWS_SECRET_ACCESS_KEY, ..., SSH_AUTH_SOCK), plus ORCH_RUN_ID,
  ORCH_STATE, ORCH_PLAYBOOK, ORCH_HOST and ORCH_CER (the best method's corpus CER, from the
  fetched results or the host's results.json; empty when unknown, e.g. a failed run). Nothing
  of the environment is printed.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess

from gpu_worker.contract.layout import RUNS_DIR
from gpu_worker.contract.schema import SchemaError, best_method, loads_bounded, validate_results

from .config import Config
from .records import RunRecord, read_record, records_dir, save_record
from .states import RunState
from .status import RunStatus

log = logging.getLogger("orchestrator")
NOTIFY_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.LOST})
SECRET_WORDS = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|AUTH|(^|_)(API_?)?KEYS?($|_)",
    re.IGNORECASE,
)
TIMEOUT_S = 60.0
MAX_RESULTS_BYTES = 4 << 20


def safe_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The user's environment without variables whose name looks like a credential."""
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in env.items() if not SECRET_WORDS.search(k)}


def notify_ended(
    config: Config, statuses: list[RunStatus], known: dict[str, RunRecord] | None = None
) -> None:
    """Fire `notify:` for each run in `statuses` whose end is seen here for the first time
    (`known`: the records as loaded by the caller, so only armed ones are read again)."""
    for s in statuses:
        if not s.reachable or not s.state.finished:
            continue
        if known is not None and not getattr(known.get(s.run_id), "notify_pending", False):
            continue
        record = read_record(records_dir(config) / f"{s.run_id}.json")  # not another command's
        if record is None or not record.notify_pending:
            continue
        record.notify_pending = False  # at most once: disarmed before anything runs
        save_record(config, record)
        if config.notify and s.state in NOTIFY_STATES:
            run_notify(config, record, s.state, headline_cer(config, record, s))


def run_notify(config: Config, record: RunRecord, state: RunState, cer: float | None) -> None:
    """Run the `notify:` command for one run (see the module docstring)."""
    env = safe_environment() | {
        "ORCH_RUN_ID": record.run_id,
        "ORCH_STATE": str(state),
        "ORCH_PLAYBOOK": record.playbook,
        "ORCH_HOST": record.host,
        "ORCH_CER": "" if cer is None else f"{cer:.6g}",
    }
    try:
        res = subprocess.run(
            ["sh", "-c", config.notify or ""],
            cwd=config.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=2,  # the command's output never mixes into a command's --json on stdout
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("notify for %s did not complete: %s", record.run_id, _why(exc))
        return
    if res.returncode != 0:
        log.warning("notify for %s exited with %d", record.run_id, res.returncode)


def _why(exc: BaseException) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"stopped after {TIMEOUT_S:g}s"
    return str(exc)


def headline_cer(config: Config, record: RunRecord, s: RunStatus) -> float | None:
    """The best method's CER of a succeeded run: from results/<id>/ when fetched, else read
    from the host (one round trip); None when there is none or it cannot be read."""
    if s.state != RunState.SUCCEEDED:
        return None
    from .fetch import results_dir

    local = results_dir(config) / record.run_id / "results.json"
    try:
        text = local.read_bytes() if local.is_file() else _remote_results(config, record)
        doc = validate_results(loads_bounded(text)) if text else None
    except (OSError, SchemaError) as exc:
        log.warning("notify for %s: no CER (%s)", record.run_id, exc)
        return None
    best = best_method(doc) if doc else None
    return doc[best]["cer"] if best else None


def _remote_results(config: Config, record: RunRecord) -> bytes:
    """The run's results.json on its host (b"" when it has none: a `command:` job)."""
    from .errors import OrchError
    from .jobs import run_host
    from .records import check_run_id
    from .shell import remote, trusted
    from .transport import open_host

    host_cfg = run_host(config, record)
    path = remote(host_cfg.remote_dir, RUNS_DIR, check_run_id(record.run_id), "results.json")
    script = trusted(f"test -f {path} && head -c {MAX_RESULTS_BYTES} {path} || true")
    try:
        with open_host(host_cfg) as host:
            return host.run(script).stdout
    except OrchError as exc:
        raise OSError(str(exc)) from None
