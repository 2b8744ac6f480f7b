"""The chaos soak (benchmarks/soak.py), bounded: 3 runs on three namespaced test hosts while
links are cut, workers SIGKILLed and resumed, sshd restarted and code pushed. Needs root (network
namespaces): skipped with the reason elsewhere. The full soak is the benchmark."""

from __future__ import annotations

from benchmarks.soak import soak
from benchmarks.soak_check import lines
from tests.needs import requires_tesseract


@requires_tesseract
def test_bounded_soak_loses_nothing(netns_hosts, tmp_path):
    report = soak(tmp_path, netns_hosts(3), runs=3, seed=7, duration=60)
    print("\n".join(lines(report)))
    assert report.runs_started == 3 and sum(report.faults.values()) >= 2, lines(report)
    assert report.runs_succeeded == report.runs_started, lines(report)
    assert report.runs_differing == 0, lines(report)
    assert report.log_lines_lost == 0 and report.log_lines_repeated == 0, lines(report)
    assert report.problems == [], lines(report)
