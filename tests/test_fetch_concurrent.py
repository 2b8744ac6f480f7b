"""`orch fetch` killed or run twice at once (issue 17, items 11 and 12), against the loopback sshd:
a SIGKILLed fetch's temp folder is removed by the next fetch, a live fetch's is not, and two
fetches of one run at once both end well (one fetches, the other waits and finds it fetched)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.helpers import orch_cmd, poll
from tests.test_faults_host import hostproj, start  # noqa: F401  (hostproj is a fixture)

BIG = "job.big_mb=40"  # a download that takes a few seconds


def finished(tmp_path, run_id: str) -> None:
    poll(lambda: (tmp_path / "remote" / "runs" / run_id / "exit_code").exists(), 60)


def temp_folders(project, run_id: str) -> list:
    return sorted((project / "results").glob(f".{run_id}.fetch-*"))


def downloading(project, run_id: str):
    """The temp folder of a fetch of `run_id` once its archive has bytes in it."""

    def check():
        return [p for p in temp_folders(project, run_id) if _archive_size(p) > 0]

    return check


def _archive_size(folder) -> int:
    try:
        return (folder / ".archive.tar.gz").stat().st_size
    except OSError:
        return 0


def test_sigkilled_fetch_leftover_is_removed_by_the_next_fetch(hostproj, orch, tmp_path):  # noqa: F811
    run_id = start(orch, BIG)
    finished(tmp_path, run_id)
    proc = subprocess.Popen(orch_cmd("fetch", run_id), stderr=subprocess.PIPE)
    poll(downloading(hostproj, run_id), 60, 0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert temp_folders(hostproj, run_id), "the killed fetch left its temp folder"
    res = orch("fetch", run_id)
    assert res.exit_code == 0 and f"{run_id}: fetched" in res.stdout, res.output
    assert temp_folders(hostproj, run_id) == []
    assert not list((hostproj / "results").glob(".*.fetch.lock"))
    done = json.loads((hostproj / "results" / run_id / "results.json").read_text())
    assert done["run"]["run_id"] == run_id


def test_a_live_fetchs_temp_folder_survives_another_fetch(hostproj, orch, tmp_path):  # noqa: F811
    big = start(orch, BIG)
    finished(tmp_path, big)
    small = start(orch, "job.steps=2")
    finished(tmp_path, small)
    proc = subprocess.Popen(orch_cmd("fetch", big), stdout=subprocess.PIPE, text=True)
    poll(downloading(hostproj, big), 60, 0.02)
    res = orch("fetch", small)  # sweeps leftovers while `big` is being fetched
    assert res.exit_code == 0, res.output
    assert proc.wait(120) == 0
    assert f"{big}: fetched" in proc.stdout.read()
    assert (hostproj / "results" / big / "predictions.jsonl").stat().st_size > 40e6
    assert temp_folders(hostproj, big) == []


def test_two_fetches_of_one_run_at_once(hostproj, orch, tmp_path):  # noqa: F811
    run_id = start(orch, BIG)
    finished(tmp_path, run_id)
    assert orch("status", run_id).exit_code == 0  # both fetches then skip straight to the copy
    procs = [
        subprocess.Popen(
            orch_cmd("fetch", run_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    t0 = time.monotonic()
    outs = [(p.wait(120), *p.communicate()) for p in procs]
    print(f"two fetches at once: done in {time.monotonic() - t0:.1f}s")
    for rc, out, err in outs:
        assert rc == 0 and "Traceback" not in err and "OSError" not in err, (out, err)
    said = sorted(out.split(" -> ")[0] for _, out, _ in outs)
    assert said == [f"{run_id}: already fetched (succeeded)", f"{run_id}: fetched (succeeded)"]
    waited = [err for _, _, err in outs if "already being fetched" in err]
    assert all(
        e.strip() == f"{run_id}: already being fetched by another orch fetch; waiting"
        for e in waited
    )
    assert temp_folders(hostproj, run_id) == []
    assert (hostproj / "results" / run_id / "predictions.jsonl").stat().st_size > 40e6
