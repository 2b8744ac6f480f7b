"""The pure views of `orchestrator/render.py` and `render_results.py`: tables, ages, status,
fetch, publish and results text."""

import json
from dataclasses import replace
from pathlib import Path

from orchestrator import render
from orchestrator.comparison import ComparisonRow
from orchestrator.doctor import Check, DoctorReport
from orchestrator.envsetup import SetupResult
from orchestrator.fetch import FetchOutcome, FetchReport, FetchResult
from orchestrator.hosts import HostEntry
from orchestrator.hub import CardPlan
from orchestrator.jobs import StatusReport
from orchestrator.publish import PublishOptions, PublishPlan
from orchestrator.publish_steps import PublishResult
from orchestrator.records import RunRecord
from orchestrator.render_results import results_table
from orchestrator.shards import ShardedRun
from orchestrator.start import StartResult
from orchestrator.states import CheckStatus, RunState
from orchestrator.status import RunStatus


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


def Status(**kw) -> RunStatus:  # noqa: N802 (a real RunStatus with a running run's defaults)
    base = dict(run_id="job-1", host="gpu", playbook="job", state=RunState.RUNNING, done=3)
    base |= dict(total=8, method="baseline", images_per_s=2.5, eta_s=120, eta_approximate=True)
    base |= dict(updated_age_s=4, elapsed_s=7300, cost=1.234)
    return RunStatus(**(base | kw))


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
    failed = Status(state=RunState.FAILED, note="exit 2", exit_code=2, log_tail=["boom"])
    assert render.status_notes([Status(note="ignored while running"), failed], True) == [
        "job-1: exit 2",
        "--- last lines of job-1 log.txt (exit code 2) ---",
        "boom",
    ]
    old = Status(state=RunState.FAILED, exit_code=3, log_tail=["step 1", "ValueError: bad", ""])
    assert render.status_notes([old, failed]) == [  # not named: one line each, no traceback
        "job-1: failed (exit code 3): ValueError: bad",
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


def Plan(commit: bool = False, **kw) -> PublishPlan:  # noqa: N802 (the real plan, minimal)
    base = dict(runs=[], options=PublishOptions(commit=commit), readme_path=Path("README.md"))
    base |= dict(readme_old="", readme_new="", readme_diff="", message="results: x", pngs={})
    base |= dict(commit_paths=[], writes=[Path("README.md")], tables=[], hub_plan=None)
    return PublishPlan(**(base | kw))


def test_publish_plan_lines():
    assert render.publish_plan_lines(Plan()) == [
        "README.md: no change",
        "  write README.md",
        "git: no commit (--no-commit)",
        "hub: nothing to upload (--no-hub, or no hub.repo_id in orch.yaml)",
    ]


def Card() -> CardPlan:  # noqa: N802
    return CardPlan("me/ocr", "model", [("combined", "cer", 0.301)], create_pr=True)


def Done(**kw) -> PublishResult:  # noqa: N802 (a real PublishResult)
    base = dict(runs=["a", "b"], message="m", written=["README.md"], commit="0123456789abcdef")
    return PublishResult(**(base | kw))


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


def Venv(changed: bool = False) -> SetupResult:  # noqa: N802
    return SetupResult("gpu", "/r/venv", ["a", "b"], changed)


def test_setup_line():
    assert render.setup_line(Venv()) == "gpu: /r/venv already up to date (2 requirements)"
    assert render.setup_line(Venv(changed=True)).startswith("gpu: /r/venv updated (")


def test_status_and_results_show_the_lora_path():
    status = Status(method="ensemble", lora_path="stacked")
    assert render.status_table([status]).rows[0][5] == "ensemble (stacked)"
    body = {"cer": 0.1, "wer": 0.2, "exact_match": 0.0, "n": 2, "failures": 0,
            "time_per_image_s": 1.0, "images_per_s": 1.0,
            "lora_path": "peft (generation.lora: peft)"}  # fmt: skip
    table = results_table([ComparisonRow.from_results("r", "p", 0, "greedy", body)])
    assert table.rows[0][-1] == "peft (generation.lora: peft)" and table.columns[-1] == "LoRA path"


def test_status_table_drops_columns_to_fit_and_keeps_the_run_id():
    run_id = "quickwin-20261124-101200-ab12"
    rows = [Status(run_id=run_id, state=RunState.QUEUED, after=run_id), Status(run_id=run_id)]
    table = render.status_table(rows)
    assert table.fit(200).columns == render.STATUS_COLUMNS  # wide enough: nothing dropped
    narrow = table.fit(80)
    assert narrow.columns[0] == "run" and "state" in narrow.columns and narrow.needed() <= 80
    assert "playbook" not in narrow.columns and "cost" not in narrow.columns
    assert all(r[0] == run_id for r in narrow.rows)
    assert table.fit(100).needed() <= 100 and len(table.fit(100).columns) > len(narrow.columns)


def test_recent_keeps_active_runs_and_the_last_finished():
    runs = [Status(run_id=f"r{i}", state=RunState.SUCCEEDED) for i in range(8)]
    runs.insert(1, Status(run_id="live"))
    shown, older = render.recent(runs, keep=5)
    assert [s.run_id for s in shown] == ["live", "r3", "r4", "r5", "r6", "r7"] and older == 3
    assert render.older_line(older) == "… 3 older runs (orch status -a)"
    assert render.recent(runs[:3]) == (runs[:3], 0)


def test_results_carry_their_exit_code_from_the_state_enums():
    fetched = FetchResult("a", FetchOutcome.FETCHED, "succeeded")
    down = FetchResult("b", FetchOutcome.UNREACHABLE, "running")
    broken = FetchResult("c", FetchOutcome.ERROR, "failed")
    merged = FetchResult("p", "already merged", "succeeded")  # merge.py writes the word
    assert [FetchReport(r).exit_code for r in ([], [fetched, merged], [fetched, down])] == [0, 0, 3]
    assert FetchReport([down, broken]).exit_code == 1  # a run not fetched beats a host down
    checks = [Check("ssh", CheckStatus.OK, ""), Check("tesseract", CheckStatus.WARN, "x")]
    assert DoctorReport("gpu", checks).exit_code == 0
    assert DoctorReport("gpu", [*checks, Check("gpu", CheckStatus.FAIL, "")]).exit_code == 1
    assert render.doctor_table(DoctorReport("gpu", checks)).rows[1] == ["tesseract", "warn", "x"]
    assert StatusReport([]).exit_code == 0 and StatusReport([], {"gpu": "x"}).exit_code == 3
    record = RunRecord("job-1", "gpu", "job", 0.0)
    assert StartResult(record).exit_code == 0
    assert render.start_lines(StartResult(record, resumed=True)) == ["resumed job-1 on gpu"]
    ok, bad = Status(state=RunState.SUCCEEDED), Status(state=RunState.LOST)
    finals = ([ok], [bad], [])
    assert [StartResult(record, followed=True, finals=f).exit_code for f in finals] == [0, 1, 1]
    assert render.start_lines(StartResult(record, followed=True, finals=[ok])) == []
    sharded = ShardedRun("p", "job", 0.0, 2, ["p-s0", "p-s1"], ["a", "b"], errors=["shard 1: x"])
    assert StartResult(sharded=sharded).exit_code == 1
    followed = StartResult(sharded=replace(sharded, errors=[]), followed=True, finals=[ok, ok])
    assert followed.exit_code == 0 and replace(followed, finals=[ok, bad]).exit_code == 1
    assert replace(followed, finals=[ok]).exit_code == 1  # a shard whose end was not seen
    assert render.start_lines(StartResult(sharded=sharded))[0] == "started p: 2 shards"


def test_results_table_cells_from_real_comparison_rows():
    """Every cell kind of `orch results` from `ComparisonRow`s built as `comparison_rows` does."""
    from orchestrator.render_results import view_cells

    def body(cer, tpi, **more):
        return {"cer": cer, "wer": cer and cer * 2, "exact_match": 0.0, "n": 4, "failures": 0,
                "time_per_image_s": tpi, "images_per_s": 1 / tpi, **more}  # fmt: skip

    vs = {"method": "base", "delta_cer": -0.05, "ci": [-0.08, -0.01], "p_value": 0.01,
          "p_holm": 0.02, "significant": True, "lines_needed": 30, "identical": False}  # fmt: skip
    same = {**vs, "delta_cer": 0.0, "ci": [0.0, 0.0], "p_value": 1.0, "p_holm": 1.0,
            "significant": False, "lines_needed": 0, "identical": True}  # fmt: skip
    bodies = {
        "base": body(0.2, 0.1, cer_ci=[0.1, 0.3], wrong_script_rate=0.01),
        "beam": body(0.15, 0.4, vs_baseline=vs, failures=1, lora_path="peft"),
        "same": body(0.2, 0.3, vs_baseline=same),
        "broken": body(None, 0.1, failures=4),
    }
    rows = [ComparisonRow.from_results("a-1", "a", 0.0, m, b) for m, b in bodies.items()]
    rows = [replace(r, overrides=("x=1", "y=2"), cost_per_1k_lines=0.05) for r in rows]
    cells = [row[2:] for row in results_table(rows).rows]
    assert cells[0] == ["base", "0.200 (0.100-0.300)", "-", "-", "-", "0.400", "0.000"] + [
        "0.100", "10.00", "4", "0.010", "$0.050", "x=1 y=2", "-"]  # fmt: skip
    assert cells[1][2:5] == ["-0.050 (-0.080..-0.010) *", "0.01 (Holm 0.02)", "30"]
    assert cells[1][9] == "4 (1 failed)" and cells[1][-1] == "peft"
    assert cells[2][2:5] == ["+0.000 (+0.000..+0.000)", "1", "identical"]
    assert cells[3][1] == "failed (4 of 4)" and cells[3][5] == "-"
    assert view_cells(rows[0]) == cells[0][:11]
    assert results_table(rows).rows[0][:2] == ["a-1", "1970-01-01 00:00"]
    as_json = rows[1].to_json()  # `orch results --json`: the fields in order, no run_costs
    assert list(as_json)[:4] == ["run_id", "playbook", "started_at", "method"]
    assert list(as_json)[-3:] == ["overrides", "hourly_rate", "cost_per_1k_lines"]
    assert as_json["delta_ci"] == (-0.08, -0.01) and "run_costs" not in as_json
    assert json.loads(render.to_json(as_json))["delta_ci"] == [-0.08, -0.01]
