"""Naming a run (`records.resolve`, the one resolver every command uses): the id, a unique
prefix or suffix, `@latest`, `@latest:PLAYBOOK`; shards collapse into their parent; an
ambiguous or unknown name exits 2 listing the candidates."""

import json

import pytest

from orchestrator.config import load_config
from orchestrator.errors import JobNotFound
from orchestrator.records import RunRecord, find_record, parents_dir, resolve, save_record
from orchestrator.runrefs import find_run, latest_ids


def _records(config) -> None:
    runs = [
        ("train-20261124-101200-ab12", "train", 1.0, None),
        ("eval-20261124-111200-cd34", "eval", 2.0, None),
        ("eval-20261125-090000-ef56", "eval", 3.0, None),
        ("val-20261126-080000-9f9f-s0", "val", 4.0, "val-20261126-080000-9f9f"),
        ("val-20261126-080000-9f9f-s1", "val", 4.1, "val-20261126-080000-9f9f"),
    ]
    for run_id, book, at, parent in runs:
        save_record(config, RunRecord(run_id, "local", book, at, parent=parent))


def test_every_form_of_a_run_name(project):
    config = load_config()
    _records(config)
    assert find_record(config, "train").run_id == "train-20261124-101200-ab12"  # prefix
    assert find_record(config, "ef56").run_id == "eval-20261125-090000-ef56"  # suffix
    assert find_record(config, "eval-20261124-111200-cd34").playbook == "eval"  # exact
    assert find_record(config, "@latest:eval").run_id == "eval-20261125-090000-ef56"
    assert find_run(config, "latest:train").run_id == "train-20261124-101200-ab12"
    assert find_record(config, "@latest").run_id == "val-20261126-080000-9f9f-s1"
    # where a parent may be named (status, cancel, fetch, --resume): shards collapse into it
    parent = "val-20261126-080000-9f9f"
    assert resolve(config, "@latest", parents=True) == parent
    assert resolve(config, "val", parents=True) == parent
    assert resolve(config, "9f9f", parents=True) == parent
    assert resolve(config, "9f9f-s0", parents=True) == parent + "-s0"
    assert latest_ids(config, ("cd34", "@latest:train")) == (
        "eval-20261124-111200-cd34",
        "train-20261124-101200-ab12",
    )
    with pytest.raises(JobNotFound, match="ambiguous: eval-20261124-111200-cd34, eval-2026112"):
        find_record(config, "eval")
    with pytest.raises(JobNotFound, match="ambiguous: val-20261126-080000-9f9f-s0, val-"):
        find_record(config, "val")  # logs names one run: the shards are the candidates
    with pytest.raises(JobNotFound, match="no run 'nope'"):
        find_record(config, "nope")
    with pytest.raises(JobNotFound, match="no run of playbook 'x'"):
        find_record(config, "@latest:x")


def test_a_parent_whose_shards_never_started_is_named_too(project):
    config = load_config()
    parents_dir(config).mkdir(parents=True)
    doc = {"parent": "big-20261127-000000-aaaa", "playbook": "big", "started_at": 1.0}
    doc |= {"num_shards": 2, "shards": ["big-20261127-000000-aaaa-s0"], "hosts": ["local"]}
    (parents_dir(config) / f"{doc['parent']}.json").write_text(json.dumps(doc))
    assert resolve(config, "aaaa", parents=True) == doc["parent"]
    with pytest.raises(JobNotFound):
        resolve(config, "aaaa")


def test_commands_take_any_run_name_and_exit_2_when_ambiguous(project, orch):
    config = load_config()
    _records(config)
    res = orch("forget", "eval")
    assert res.exit_code == 2
    assert "ambiguous: eval-20261124-111200-cd34, eval-20261125-090000-ef56" in res.stderr
    assert orch("forget", "cd34").stdout == "forgot eval-20261124-111200-cd34\n"
    assert orch("forget", "@latest:eval").stdout == "forgot eval-20261125-090000-ef56\n"
    assert orch("forget", "@latest").stdout == "forgot val-20261126-080000-9f9f-s1\n"
    logs = orch("logs", "@latest:nope")
    assert logs.exit_code == 2 and "no run of playbook 'nope'" in logs.stderr


def test_a_bug_is_one_line_and_its_traceback_is_behind_v(project, orch, monkeypatch):
    def boom(config, ref):
        raise RuntimeError("boom")

    monkeypatch.setattr("orchestrator.records.forget_record", boom)
    res = orch("forget", "x")
    assert res.exit_code == 1 and res.stderr == (
        "orch: internal error: RuntimeError: boom (run with -v)\n"
    )
    assert "Traceback" in orch("-v", "forget", "x").stderr


def test_publish_takes_any_run_name(project, orch):
    """`orch publish RUN`: any name `resolve` takes (a fetched folder's own id needs no record:
    test_publish.py); ambiguous exits 2; a run named but not fetched says to fetch it."""
    from tests.test_publish import write_results

    _records(load_config())
    write_results(project, "eval-20261125-090000-ef56", {"greedy": 0.3}, playbook="eval")
    write_results(project, "train-20261124-101200-ab12", {"greedy": 0.4}, playbook="train")
    res = orch("publish", "--no-hub", "--dry-run", "ef56", "@latest:train")
    assert res.exit_code == 0, res.output  # a suffix and @latest:PLAYBOOK (test_publish: ids)
    headings = [x for x in res.stdout.splitlines() if x.startswith("+### ")]
    assert headings == ["+### eval", "+### train"]
    ambiguous = orch("publish", "--no-hub", "--dry-run", "eval")
    assert ambiguous.exit_code == 2 and "ambiguous: eval-20261124-111200-cd34, eval-" in (
        ambiguous.stderr
    )
    unfetched = orch("publish", "--no-hub", "--dry-run", "cd34")
    assert unfetched.exit_code == 1
    assert "no fetched results for eval-20261124-111200-cd34 in results/" in unfetched.stderr
    assert orch("publish", "--no-hub", "@latest:nope").exit_code == 2
    assert not (project / "README.md").exists()
