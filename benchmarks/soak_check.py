"""The soak's figures and its checks: results equal to an undisturbed run's, `orch logs -f`
output against the final log.txt (benchmarks/soak.py)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.test_faults_link import TIMEOUT
from tests.test_shards import assert_same_results


@dataclass
class Report:
    """The soak's figures."""

    seed: int
    runs_started: int = 0
    sharded_runs: int = 0
    faults: dict = field(default_factory=dict)
    runs_recovered: int = 0
    runs_succeeded: int = 0
    runs_differing: int = 0
    log_lines_lost: int = 0
    log_lines_repeated: int = 0
    longest_unreported_beyond_timeout_s: float = 0.0
    longest_until_shown_s: dict = field(default_factory=dict)  # by fault kind
    host_timeout_s: float = TIMEOUT
    status_healthy_s: float = 0.0  # one `orch status --host a` with nothing wrong, for scale
    wall_s: float = 0.0
    problems: list = field(default_factory=list)


def line_diff(want: bytes, got: bytes) -> tuple[int, int]:
    """(lines of `want` missing from `got`, lines of `got` beyond `want`), counted as multisets."""
    a, b = Counter(want.splitlines()), Counter(got.splitlines())
    return sum((a - b).values()), sum((b - a).values())


def predictions(folder: Path) -> list:
    """Every prediction line of a fetched run as (index, method, prediction, error), sorted."""
    lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    return sorted((r["index"], r["method"], r.get("prediction"), r.get("error")) for r in rows)


def same(folder: Path, reference: Path) -> bool:
    """Scores, data selection and every prediction equal the reference's (timings aside)."""
    got = json.loads((folder / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    try:
        assert_same_results(got, want)
    except AssertionError:
        return False
    return predictions(folder) == predictions(reference)


def lines(report: Report) -> list[str]:
    """The report as the lines the soak prints."""
    faults = ", ".join(f"{k} {v}" for k, v in report.faults.items()) or "none"
    out = [
        f"runs started: {report.runs_started} ({report.sharded_runs} sharded over 2 hosts)",
        f"faults injected: {sum(report.faults.values())} ({faults})",
        f"runs recovered (resumed, then succeeded): {report.runs_recovered}",
        f"runs succeeded and fetched: {report.runs_succeeded}",
        f"runs differing from an undisturbed run: {report.runs_differing}",
        f"log lines lost / repeated under orch logs -f: "
        f"{report.log_lines_lost} / {report.log_lines_repeated}",
        f"longest a fault went unreported beyond the host's timeout ({TIMEOUT} s): "
        f"{report.longest_unreported_beyond_timeout_s:.1f} s (longest until `orch status` "
        f"showed it, Python's start-up aside: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(report.longest_until_shown_s.items()))
        + f"; a healthy `orch status` took {report.status_healthy_s:.1f} s)",
        f"wall time: {report.wall_s:.0f} s (seed {report.seed})",
    ]
    return out + [f"problem: {p}" for p in report.problems]
