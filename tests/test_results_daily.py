"""`orch results` filters, overrides and cost per 1,000 lines, and `orch compare`, over fetched
run folders as `orch fetch` leaves them (results.json, run.json, predictions.jsonl)."""

import json
from calendar import timegm
from pathlib import Path

import pytest

from gpu_worker.contract.schema import cost_per_1k_lines

DAY1 = float(timegm((2026, 11, 20, 9, 0, 0, 0, 0, 0)))
DAY5 = float(timegm((2026, 11, 25, 9, 0, 0, 0, 0, 0)))


def method(cer: float, tpi: float | None, n: int = 4) -> dict:
    return {
        "cer": cer,
        "wer": cer * 2,
        "exact_match": 0.0,
        "n": n,
        "failures": 0,
        "time_per_image_s": tpi,
        "images_per_s": 1 / tpi if tpi else None,
    }


def write_run(root: Path, run_id: str, results: dict, run_json: dict, lines=()) -> None:
    folder = root / "results" / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "run.json").write_text(json.dumps(run_json))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def fetched(project):
    """Two fetched runs of two playbooks, five days apart, on hosts with different prices."""
    a = {
        "run": {"playbook": "alpha", "started_at": DAY1},
        "baseline": method(0.20, 0.1),
        "beam": method(0.15, 0.4),
    }
    write_run(project, "alpha-1", a, {"hourly_rate": 1.8, "overrides": ["data.n_samples=20"]})
    b = {
        "run": {"playbook": "beta", "started_at": DAY5, "cost_per_1k_lines": {"baseline": 0.5}},
        "baseline": method(0.30, 0.2),
    }
    write_run(project, "beta-1", b, {"hourly_rate": None, "overrides": []})
    return project


def rows(orch, *args) -> list[dict]:
    res = orch("results", "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_results_cost_overrides_and_filters(fetched, orch):
    got = {(r["run_id"], r["method"]): r for r in rows(orch)}
    # 1000 lines x 0.1 s = 100 s at $1.8/h
    assert got[("alpha-1", "baseline")]["cost_per_1k_lines"] == pytest.approx(0.05)
    assert got[("alpha-1", "beam")]["cost_per_1k_lines"] == pytest.approx(0.2)
    assert got[("alpha-1", "beam")]["overrides"] == ["data.n_samples=20"]
    assert got[("beta-1", "baseline")]["cost_per_1k_lines"] == 0.5  # the results' own figure
    assert [r["run_id"] for r in rows(orch, "--playbook", "beta")] == ["beta-1"]
    assert [r["method"] for r in rows(orch, "--method", "beam")] == ["beam"]
    assert [r["run_id"] for r in rows(orch, "--since", "2026-11-24")] == ["beta-1"]
    assert len(rows(orch, "--since", "2026-11-19T12:00")) == 3
    table = orch("results", "--playbook", "alpha").stdout
    assert "$/1k lines" in table and "overrides" in table.splitlines()[0]
    assert "$0.050" in table and "$0.200" in table and "data.n_samples=20" in table
    assert orch("results", "--method", "nosuch").stdout.strip() == "no results match"
    bad = orch("results", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert bad.output.strip() == (
        "orch: error: --since 'last tuesday': expected a UTC date or time (2026-11-24, "
        "2026-11-24T10:30) or an age (3d, 12h, 90m)"
    )


def test_cost_per_1k_lines_and_the_worker_run_block(tmp_path):
    from gpu_worker.provenance import costs

    assert cost_per_1k_lines(3.6, 2.0) == pytest.approx(2.0)  # 1000 lines x 3.6 s = 1 h
    assert cost_per_1k_lines(None, 2.0) is None and cost_per_1k_lines(1.0, None) is None
    (tmp_path / "run.json").write_text(json.dumps({"hourly_rate": 0.9}))
    results = {"greedy": method(0.1, 0.4), "failed": method(0.1, None)}
    block = costs(results, tmp_path)
    assert block == {"hourly_rate": 0.9, "cost_per_1k_lines": {"greedy": 0.1, "failed": None}}
    assert costs(results, tmp_path / "nowhere")["cost_per_1k_lines"]["greedy"] is None


def test_status_cost_is_never_negative():
    from orchestrator import render
    from orchestrator.status import SeenRun, to_status

    # exit_code's mtime is whole seconds: a run that ends within its first second "ended"
    # before it started
    seen = SeenRun(info={"started_at": 1000.4, "hourly_rate": 2.0}, exit=0, ended=1000.0)
    seen.info["own_command"] = True
    s = to_status("gpu", "job-1", seen, now=1001.0, read_at=1001.0)
    assert s.elapsed_s == 0.0 and s.cost == 0.0
    assert render.status_table([s]).rows[0][-1] == "$0.00"
    from orchestrator.render_results import money

    assert money(-0.001) == "$0.000" and money(None) == "-"


def prediction_lines(method_name: str, edits: list[int], lengths: list[int], refs=None):
    refs = refs or [f"line {i}" for i in range(len(edits))]
    return [
        {"index": i, "method": method_name, "reference": refs[i], "prediction": "x",
         "cer": e / n, "char_edits": e, "chars": n, "seconds": 0.1}
        for i, (e, n) in enumerate(zip(edits, lengths, strict=True))
    ]  # fmt: skip


def test_compare_is_paired_on_the_lines_both_scored(project, orch):
    import numpy as np

    from gpu_worker import stats

    rng = np.random.default_rng(3)
    lengths = rng.integers(20, 60, size=30).tolist()
    ea = rng.binomial(lengths, 0.30).tolist()
    eb = rng.binomial(lengths, 0.18).tolist()
    res_a = {"run": {"playbook": "p", "started_at": DAY1}, "greedy": method(0.3, 0.1, n=30)}
    res_b = {"run": {"playbook": "p", "started_at": DAY5}, "greedy": method(0.2, 0.1, n=24)}
    write_run(project, "cmp-a", res_a, {}, prediction_lines("greedy", ea, lengths))
    lines_b = prediction_lines("greedy", eb, lengths)[:24]  # B scored 24 of A's 30 lines
    lines_b[5] = {**lines_b[5], "char_edits": 99, "prediction": "y"}  # rewritten: the last wins
    lines_b.append(prediction_lines("greedy", eb, lengths)[5])
    write_run(project, "cmp-b", res_b, {}, lines_b)
    res = orch("compare", "cmp-a", "cmp-b", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["methods"][0]
    assert (got["n_a"], got["n_b"], got["matched"]) == (30, 24, 24)
    want = stats.paired(ea[:24], eb[:24], lengths[:24], 1000)  # the worker's numpy bootstrap
    assert got["delta_cer"] == pytest.approx((sum(eb[:24]) - sum(ea[:24])) / sum(lengths[:24]))
    assert got["ci"] == pytest.approx(want.ci, abs=0.015)
    assert got["significant"] and want.significant and got["p_value"] < 0.01
    assert got["lines_needed"] == want.lines_needed and not got["identical"]
    text = orch("compare", "cmp-a", "cmp-b").stdout
    assert "cmp-b vs cmp-a" in text and "*" in text
    assert "greedy: cmp-a scored 30 lines, cmp-b 24; compared on the 24 both scored" in text
    same = orch("compare", "cmp-a", "cmp-a", "--method", "greedy")
    assert "identical" in same.stdout and "the same edits on every matched line" in same.stdout
    assert orch("compare", "cmp-a", "cmp-b", "--method", "beam").exit_code == 2
    # not the same data: refused, nothing compared
    other = prediction_lines("greedy", eb, lengths, refs=[f"other {i}" for i in range(30)])
    write_run(project, "cmp-c", res_b, {}, other)
    bad = orch("compare", "cmp-a", "cmp-c")
    assert bad.exit_code == 1 and "30 of 30 matched lines have different references" in bad.output
    # lines written before edit counts were recorded: refused
    old = [{k: v for k, v in x.items() if k != "char_edits"} for x in lines_b]
    write_run(project, "cmp-old", res_b, {}, old)
    bad = orch("compare", "cmp-a", "cmp-old")
    assert bad.exit_code == 1 and "has no edit counts (char_edits, chars)" in bad.output
    assert orch("compare", "cmp-a", "nosuch").exit_code == 2
