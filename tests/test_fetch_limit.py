"""`orch fetch` streams a run's files to disk and refuses a run larger than `fetch.max_mb`."""

import json
import subprocess

from orchestrator.backends import FETCH_FILES
from tests.test_jobs import jobs_project, start, wait_for

__all__ = ["jobs_project"]  # the fixture, shared with test_jobs.py


def names(folder):
    return sorted(f.name for f in folder.iterdir() if f.name in FETCH_FILES)


def _set_limit(project, max_mb):
    cfg = project / "orch.yaml"
    text = "\n".join(line for line in cfg.read_text().splitlines() if "fetch:" not in line)
    cfg.write_text(text + f"\nfetch: {{max_mb: {max_mb}}}\n")


def test_fetch_over_the_limit_writes_nothing_and_a_higher_limit_fetches(jobs_project, orch):
    run_id = start(orch, "local", "job.steps=200", "job.sleep=0")
    assert wait_for(orch, run_id)["state"] == "succeeded"
    _set_limit(jobs_project, 0.0005)  # ~520 bytes: less than the compressed files
    res = orch("fetch", run_id)
    assert res.exit_code == 1, res.output
    assert f"{run_id}: error (succeeded): " in res.stdout
    assert "larger than fetch.max_mb (0.0005 MB) (compressed)" in res.stdout
    results = jobs_project / "results"
    assert not results.exists() or list(results.iterdir()) == []
    files = jobs_project / ".orch" / "local" / "runs" / run_id
    unpacked = sum(f.stat().st_size for f in files.iterdir() if f.name in FETCH_FILES)
    packed = len(
        subprocess.run(
            ["tar", "-cz", "-C", str(files), *names(files)], capture_output=True, check=True
        ).stdout
    )
    assert packed * 2 < unpacked  # predictions.jsonl compresses well
    _set_limit(jobs_project, round((packed + unpacked) / 2 / (1 << 20), 6))
    res = orch("fetch", run_id)
    assert res.exit_code == 1 and "MB) (unpacked); raise it in orch.yaml" in res.stdout
    assert not results.exists() or list(results.iterdir()) == []
    _set_limit(jobs_project, 1)
    res = orch("fetch", run_id, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["outcome"] == "fetched"
    assert sorted(p.name for p in results.iterdir()) == [run_id]  # no temp folder left
    assert not (results / run_id / ".archive.tar.gz").exists()


def test_fetch_max_mb_must_be_positive(jobs_project, orch):
    _set_limit(jobs_project, 0)
    res = orch("fetch")
    assert res.exit_code == 2
    assert "orch.yaml: fetch.max_mb: expected a positive number, got 0" in res.stderr
