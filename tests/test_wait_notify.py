"""`orch wait` and `notify:` on the loopback sshd with real tmux jobs (`command:` playbooks):
wait exits with the runs' combined state, notify runs a real local command once per run with
the run's facts (CER read from the host's results.json) and without credentials."""

import json

import pytest

from tests.helpers import worker_checkout

RESULTS = {
    "run": {"playbook": "scored"},
    "baseline": {
        "cer": 0.25,
        "wer": 0.5,
        "exact_match": 0.0,
        "n": 4,
        "failures": 0,
        "time_per_image_s": 0.1,
        "images_per_s": 10.0,
    },
}
BOOKS = {
    "ok": 'command: "echo fine"\n',
    "fails": 'command: "echo broken; exit 3"\n',
    "slow": 'command: "sleep 30"\n',
    "scored": 'command: "cp results_fixture.json {out}/results.json"\n',
}
NOTIFY = (
    'printf "%s %s %s %s [%s] %s\\n" "$ORCH_RUN_ID" "$ORCH_STATE" "$ORCH_PLAYBOOK" "$ORCH_HOST" '
    '"$ORCH_CER" "${HF_TOKEN:-no-token}" >> notified.txt'
)


@pytest.fixture
def daily_project(tmp_path, sshd, box, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "results_fixture.json").write_text(json.dumps(RESULTS))
    checkout = worker_checkout(root, tmp_path, sshd, monkeypatch, BOOKS)
    root = next(checkout)
    cfg = root / "orch.yaml"
    text = cfg.read_text().replace("[data/sample]", "[data/sample, results_fixture.json]")
    cfg.write_text(text + f"notify: '{NOTIFY}'\n")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    yield root
    yield from checkout


def start(orch, book: str, *sets: str) -> str:
    res = orch("run", book, "--host", "gpu", "--allow-concurrent", *sets)
    assert res.exit_code == 0, res.output
    return res.stdout.split("started ")[1].split()[0]


def test_wait_exits_with_the_runs_state_and_notify_fires_once(daily_project, orch):
    ok, bad, scored = start(orch, "ok"), start(orch, "fails"), start(orch, "scored")
    renamed = start(orch, "ok", "--set", "name=ok_renamed")  # one name: run id, status, results
    assert renamed.startswith("ok_renamed-")
    assert orch("wait", renamed, "--interval", "0.3").exit_code == 0
    seen = json.loads(orch("status", "--json", renamed).stdout)[0]
    assert seen["playbook"] == "ok_renamed"
    record = json.loads((daily_project / ".orch" / "runs" / f"{renamed}.json").read_text())
    assert (record["playbook"], record["playbook_file"]) == ("ok_renamed", "ok")
    res = orch("wait", ok, bad, scored, "--interval", "0.3")
    assert res.exit_code == 1, res.output  # one failed
    assert f"{ok}: succeeded" in res.stdout and f"{bad}: failed (exit 3)" in res.stdout
    notified = (daily_project / "notified.txt").read_text().splitlines()
    assert sorted(notified) == sorted(
        [
            f"{renamed} succeeded ok_renamed gpu [] no-token",
            f"{ok} succeeded ok gpu [] no-token",
            f"{bad} failed fails gpu [] no-token",
            f"{scored} succeeded scored gpu [0.25] no-token",
        ]
    )
    assert "hf_secret_value" not in res.output
    # all succeeded: 0; seen again by wait and status: no second notification
    assert orch("wait", ok, scored, "--interval", "0.3").exit_code == 0
    assert orch("status").exit_code == 0
    assert len((daily_project / "notified.txt").read_text().splitlines()) == 4
    # still running at the timeout: 124, and --json says so
    slow = start(orch, "slow")
    res = orch("wait", slow, "--interval", "0.2", "--timeout", "0.5", "--json")
    assert res.exit_code == 124
    out = json.loads(res.stdout)
    assert out["timed_out"] and out["runs"][0]["state"] == "running"
    assert orch("cancel", slow, "--grace", "0.5").exit_code == 0
    assert orch("wait", slow, "--interval", "0.2").exit_code == 1  # cancelled: not a success
    assert len((daily_project / "notified.txt").read_text().splitlines()) == 4  # no notify


def test_notify_must_be_a_command(project, orch):
    (project / "orch.yaml").write_text("notify: [1, 2]\n")
    res = orch("status")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "orch: error: orch.yaml: notify: expected a shell command (a non-empty string), e.g. "
        "notify: 'notify-send \"orch: $ORCH_RUN_ID $ORCH_STATE\"'"
    ]


def test_unknown_run_is_a_usage_error(project, orch):
    res = orch("wait", "nosuch-run")
    assert res.exit_code == 2 and "no run 'nosuch-run'" in res.output


def test_notify_environment_has_no_credentials():
    from orchestrator.notify import safe_environment

    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "MONKEY": "kept",
        "HF_TOKEN": "x",
        "HUGGING_FACE_HUB_TOKEN": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ACCESS_KEY_ID": "x",
        "OPENAI_API_KEY": "x",
        "GITHUB_PAT_PASSWORD": "x",
        "SSH_AUTH_SOCK": "x",
        "DB_CREDENTIALS": "x",
    }
    assert safe_environment(env) == {"PATH": "/usr/bin", "HOME": "/home/me", "MONKEY": "kept"}
