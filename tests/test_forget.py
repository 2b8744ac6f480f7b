"""A run whose folder vanished from its host (issue 20 item 4): a plain `orch fetch` skips it as
`gone` and fetches the rest; named, it is an error; `orch logs` on it exits 2 with a line;
`orch forget` drops its local record."""

import json
import shutil

from tests.conftest import remote_dir_of
from tests.test_publish import pub, write_results
from tests.test_publish_headline import _record

__all__ = ["pub"]  # the fixture, shared with test_publish.py

DONE = "quickwin-20261125-090000-cd34"
GONE = "quickwin-20261125-080000-dead"


def test_a_vanished_run_does_not_block_fetch_and_can_be_forgotten(pub, orch):
    write_results(pub, DONE, {"baseline": 0.3}, t=1.9e9)
    (remote_dir_of(pub) / "runs").mkdir(parents=True)
    shutil.move(pub / "results" / DONE, remote_dir_of(pub) / "runs" / DONE)
    _record(pub, DONE, "running", 0)
    _record(pub, GONE, "running", 0)
    shutil.rmtree(remote_dir_of(pub) / "runs" / GONE)  # vanished from the host
    shown = orch("status", "--json")
    assert shown.exit_code == 0, shown.output
    state = {r["run_id"]: r["state"] for r in json.loads(shown.stdout)}
    assert state[GONE] == "gone" and state[DONE] != "gone"
    assert f"{GONE}: its folder is gone from local" in orch("status").stdout
    res = orch("fetch")
    assert res.exit_code == 0, res.output
    assert f"{DONE}: fetched (succeeded)" in res.stdout
    assert (
        f"{GONE}: gone (last seen running): not found on local; `orch forget {GONE}` drops "
        "its record" in res.stdout
    )
    assert json.loads((pub / "results" / DONE / "results.json").read_text())["baseline"]
    logs = orch("logs", GONE)
    assert logs.exit_code == 2 and not logs.stdout
    assert logs.stderr == (
        f"orch: error: {GONE}: its folder is gone from local; `orch forget {GONE}` drops its "
        "record\n"
    )
    assert orch("logs", DONE).stdout == "done\n"
    named = orch("fetch", GONE)
    assert named.exit_code == 1 and f"{GONE}: error" in named.stdout
    assert orch("forget", GONE).stdout == f"forgot {GONE}\n"
    assert not (pub / ".orch" / "runs" / f"{GONE}.json").exists()
    assert orch("fetch").stdout == "nothing to fetch\n"
    res = orch("forget", GONE)
    assert res.exit_code == 2 and f"no run '{GONE}'" in res.stderr
