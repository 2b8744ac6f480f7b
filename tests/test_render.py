"""The pure views of `orchestrator/render.py`: tables, ages, status, fetch and publish text."""

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import render
from orchestrator.fetch import FetchOutcome, FetchResult
from orchestrator.follow import HostEntry


def test_age_steps_from_seconds_to_minutes_to_hours():
    assert [render.age(x) for x in (None, -3, 0, 89, 90, 5399, 5400, 7500)] == [
        "-",
        "0s",
        "0s",
        "89s",
        "1m",
        "89m",
        "1h30m",
        "2h05m",
    ]


def test_plain_table_aligns_columns_and_strips_trailing_space():
    table = render.Table("title", ["a", "bbb"], [["xx", "y"], ["z", ""]])
    assert table.plain().splitlines() == ["title", "a   bbb", "xx  y", "z"]


def test_hosts_table():
    rows = render.hosts_table([HostEntry("gpu1", "10.0.0.1", "/r", "orch.yaml")]).rows
    assert rows == [["gpu1", "10.0.0.1", "/r", "orch.yaml"]]


@dataclass
class Status:
    run_id: str = "job-1"
    host: str = "gpu"
    playbook: str = "job"
    state: str = "running"
    reachable: bool = True
    done: int = 3
    total: int | None = 8
    method: str | None = "baseline"
    images_per_s: float | None = 2.5
    eta_s: float | None = 120
    eta_approximate: bool = True
    updated_age_s: float | None = 4
    elapsed_s: float | None = 7300
    cost: float | None = 1.234
    note: str = ""
    exit_code: int | None = None
    log_tail: list = field(default_factory=list)
    after: str | None = None


def test_status_row_and_notes():
    table = render.status_table([Status()])
    assert table.rows == [
        ["job-1", "gpu", "job", "running", "3/8", "baseline", "2.50", "~2m", "4s", "2h01m", "$1.23"]
    ]
    gone = Status(reachable=False, note="gpu: unreachable", total=None, images_per_s=None)
    assert render.status_table([gone]).rows[0][3:7] == ["unreachable (last: running)", "-"] + [
        "baseline",
        "-",
    ]
    failed = Status(state="failed", note="exit 2", exit_code=2, log_tail=["boom"])
    assert render.status_notes([Status(note="ignored while running"), failed], True) == [
        "job-1: exit 2",
        "--- last lines of job-1 log.txt (exit code 2) ---",
        "boom",
    ]
    old = Status(state="failed", exit_code=3, log_tail=["step 1", "ValueError: bad line", ""])
    assert render.status_notes([old, failed]) == [  # not named: one line each, no traceback
        "job-1: failed (exit code 3): ValueError: bad line",
        "job-1: failed (exit code 2): exit 2",
    ]
    assert render.no_runs_line({}) == "no runs"
    assert render.no_runs_line({"gpu": "x"}) == "no runs seen: some hosts did not answer"
    assert render.unreachable_lines({"gpu": "gpu: refused", "b": "timed out"}) == [
        "orch: gpu: refused",
        "orch: b: timed out",
    ]


def test_fetch_lines_show_the_log_of_a_fetched_failed_run_only():
    results = [
        FetchResult("a", FetchOutcome.FETCHED, "failed", "/r/a", log_tail=["Traceback"]),
        FetchResult("b", FetchOutcome.ERROR, "failed", error="too big", log_tail=["x"]),
    ]
    assert render.fetch_lines(results) == [
        "a: fetched (failed) -> /r/a",
        "  Traceback",
        "b: error (failed): too big",
    ]
    assert render.fetch_lines([]) == ["nothing to fetch"]


@dataclass
class Plan:
    readme_diff: str = ""
    writes: list = field(default_factory=lambda: [Path("README.md")])
    commit: bool = False
    message: str = "results: x"
    hub_plan: object = None
    notes: list = field(default_factory=list)


def test_publish_plan_lines():
    assert render.publish_plan_lines(Plan()) == [
        "README.md: no change",
        "  write README.md",
        "git: no commit (--no-commit)",
        "hub: nothing to upload (--no-hub, or no hub.repo_id in orch.yaml)",
    ]


@dataclass
class Card:
    repo_id: str = "me/ocr"
    repo_type: str = "model"
    create_pr: bool = True
    entries: list = field(default_factory=lambda: [("combined", "cer", 0.301)])


@dataclass
class Done:
    runs: list = field(default_factory=lambda: ["a", "b"])
    written: list = field(default_factory=lambda: ["README.md"])
    commit: str | None = "0123456789abcdef"
    pushed_to: str | None = None
    hub: str = "skipped"
    uploaded: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    committing: bool = True


def test_publish_plan_with_a_card_and_the_result_lines():
    plan = Plan(readme_diff="-old\n+new", writes=[], commit=True, hub_plan=Card())
    assert render.publish_plan_lines(plan) == [
        "-old\n+new",
        "commit message: results: x",
        "hub: model me/ocr, pull request, README.md with model-index:",
        "  combined cer 0.301",
    ]
    assert render.publish_lines(Done()) == [
        "published a, b",
        "  wrote README.md",
        "git: committed 0123456789",
        "hub: skipped",
    ]
    assert render.publish_lines(Done(commit=None))[2] == "git: nothing new to commit"
    up = Done(hub="https://hub/c/1", uploaded=["README.md", "plots/a.png"], notes=["a: kept"])
    assert render.publish_lines(up)[0] == "note: a: kept"
    assert render.publish_lines(up)[-1] == "hub: uploaded README.md, plots/a.png: https://hub/c/1"
    assert render.publish_lines(Done(hub="up to date"))[-1] == "hub: up to date, nothing uploaded"
    failed = Done(pushed_to="origin/main", error="hub: upload to me/ocr failed (x)", exit_code=6)
    assert render.publish_lines(failed)[-2:] == [
        "git: committed 0123456789",
        "git: pushed to origin/main",
    ]
    assert render.publish_error_line(failed) == (
        "orch: error: hub: upload to me/ocr failed (x); git is done; re-run `orch publish` to "
        "retry the upload"
    )
    unwritten = Done(commit=None, error="git: commit failed (hook)", exit_code=4)
    assert render.publish_lines(unwritten) == ["published a, b", "  wrote README.md"]
    assert render.publish_error_line(Done()) is None
    assert render.publish_lines(Done(commit=None, committing=False))[2] == (
        "git: not committed (--no-commit)"
    )


@dataclass
class Venv:
    host: str = "gpu"
    venv: str = "/r/venv"
    changed: bool = False
    requirements: list = field(default_factory=lambda: ["a", "b"])


def test_setup_line():
    assert render.setup_line(Venv()) == "gpu: /r/venv already up to date (2 requirements)"
    assert render.setup_line(Venv(changed=True)).startswith("gpu: /r/venv updated (")


def test_status_and_results_show_the_lora_path():
    from orchestrator.status import RunStatus

    status = RunStatus("job-1", "gpu", "job", "running", method="ensemble", lora_path="stacked")
    assert render.status_table([status]).rows[0][5] == "ensemble (stacked)"
    row = {"run_id": "r", "started_at": 0, "method": "greedy", "cer": 0.1, "wer": 0.2,
           "exact_match": 0.0, "n": 2, "failures": 0, "time_per_image_s": 1.0,
           "images_per_s": 1.0, "lora_path": "peft (generation.lora: peft)"}  # fmt: skip
    table = render.results_table([row])
    assert table.rows[0][-1] == "peft (generation.lora: peft)" and table.columns[-1] == "LoRA path"


def test_status_table_drops_columns_to_fit_and_keeps_the_run_id():
    run_id = "quickwin-20261124-101200-ab12"
    rows = [Status(run_id=run_id, state="queued", after=run_id), Status(run_id=run_id)]
    table = render.status_table(rows)
    assert table.fit(200).columns == render.STATUS_COLUMNS  # wide enough: nothing dropped
    narrow = table.fit(80)
    assert narrow.columns[0] == "run" and "state" in narrow.columns and narrow.needed() <= 80
    assert "playbook" not in narrow.columns and "cost" not in narrow.columns
    assert all(r[0] == run_id for r in narrow.rows)
    assert table.fit(100).needed() <= 100 and len(table.fit(100).columns) > len(narrow.columns)


def test_recent_keeps_active_runs_and_the_last_finished():
    runs = [Status(run_id=f"r{i}", state="succeeded") for i in range(8)]
    runs.insert(1, Status(run_id="live", state="running"))
    shown, older = render.recent(runs, keep=5)
    assert [s.run_id for s in shown] == ["live", "r3", "r4", "r5", "r6", "r7"] and older == 3
    assert render.older_line(older) == "… 3 older runs (orch status -a)"
    assert render.recent(runs[:3]) == (runs[:3], 0)
