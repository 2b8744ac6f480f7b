"""Run records in .orch/runs: round trip (states and code identity as types), and a corrupt
record is reported by name instead of vanishing."""

import json
import logging

from gpu_worker.contract.layout import CodeIdentity
from orchestrator.config import load_config
from orchestrator.records import RunRecord, find_record, load_records, records_dir, save_record
from orchestrator.states import RunState


def test_record_round_trip_keeps_types(project):
    config = load_config()
    code = CodeIdentity(commit="abc", dirty=False, content_hash="f00")
    save_record(config, RunRecord("p-1", "local", "p", 1.0, code=code, state=RunState.FAILED))
    (got,) = load_records(config)
    assert got.code == code and got.state is RunState.FAILED
    on_disk = json.loads((records_dir(config) / "p-1.json").read_text())
    assert on_disk["state"] == "failed" and on_disk["code"]["commit"] == "abc"


def test_corrupt_record_is_warned_about_by_name(project, caplog):
    config = load_config()
    save_record(config, RunRecord("p-1", "local", "p", 1.0))
    bad = records_dir(config) / "p-2.json"
    bad.write_text('{"run_id": "p-2", "host": ')
    (records_dir(config) / "p-3.json").write_text('{"run_id": "p-3", "state": "nonsense"}')
    with caplog.at_level(logging.WARNING, logger="orchestrator"):
        assert [r.run_id for r in load_records(config)] == ["p-1"]
        assert find_record(config, "p-1").run_id == "p-1"
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(bad) in m and "corrupt run record" in m for m in warned), warned
    assert any("p-3.json" in m for m in warned), warned
