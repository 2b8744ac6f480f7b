"""Finding runs a laptop has no record of: a fresh clone (no `.orch/runs/` nor `.orch/shards/`)
asks every host in orch.yaml for the runs under its `<remote_dir>/runs/*/run.json`; later,
`orch status --host NAME` does the same for one host.

Hosts are asked in parallel through `jobs.collect_status_report` (one round trip each), which
writes a local record for every run it sees, so `logs`, `fetch` and `cancel` work on them
afterwards. A host that does not answer is listed in `unreachable` (one line on stderr) and
the others' runs are still returned. Nothing a host sends chooses a local path: a folder whose
name is not a valid run id (`contract.layout.RUN_ID_RE`) is ignored by the status parser.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .config import Config
from .jobs import StatusReport, collect_status_report
from .records import load_records, parents_dir, records_dir


def fresh_clone(config: Config) -> bool:
    """Whether this checkout has never recorded a run (no `.orch/runs/`, no `.orch/shards/`)."""
    return not records_dir(config).exists() and not parents_dir(config).exists()


def discover(config: Config) -> StatusReport:
    """Every run on the hosts of orch.yaml (recorded locally as a side effect), oldest first."""
    names = sorted(config.hosts)
    if not names:
        return StatusReport([])
    with ThreadPoolExecutor(len(names)) as pool:
        reports = list(pool.map(lambda n: collect_status_report(config, (), n), names))
    order = {r.run_id: r.started_at for r in load_records(config)}  # just written
    runs = sorted(
        (s for r in reports for s in r.runs), key=lambda s: (order.get(s.run_id, 0), s.run_id)
    )
    unreachable = {k: v for r in reports for k, v in r.unreachable.items()}
    return StatusReport(runs, dict(sorted(unreachable.items())))
