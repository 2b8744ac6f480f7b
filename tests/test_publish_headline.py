"""Which runs the README's headline tables show: the published (pinned) run of each playbook
stays until a run of at least the same n, a named run or `--replace` takes its place; runs named
explicitly get their own headings and plots; a history plot per playbook; the provenance line
names model, adapters and dataset revision; runs not fetched are listed (`--fetch` fetches)."""

import json
import shutil
import time

from orchestrator.plot import history_figure
from tests.conftest import git, remote_dir_of
from tests.test_publish import RUN, pub, write_results

__all__ = ["pub"]  # the fixture, shared with test_publish.py

SMOKE = "quickwin-20261125-090000-cd34"
FULL = "quickwin-20261126-090000-ef56"


def headings(root) -> list[str]:
    return [x for x in (root / "README.md").read_text().splitlines() if x.startswith("### ")]


def pins(root) -> dict:
    return json.loads((root / "results" / "plots" / "published.json").read_text())


def test_pinned_run_stays_against_a_smaller_newer_run_until_replaced(pub, orch):
    assert orch("publish", "--no-hub").exit_code == 0
    assert pins(pub) == {"quickwin": [RUN]}
    write_results(pub, SMOKE, {"baseline": 0.5, "combined": 0.45}, t=1.9e9, n=8)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 0, res.output
    assert (
        f"note: quickwin: kept the published run {RUN} (n=50); newer {SMOKE} scored fewer "
        "lines (n=8): name it or pass --replace" in res.stdout
    )
    text = (pub / "README.md").read_text()
    assert f"run `{RUN}`" in text and SMOKE not in text.split("![CER of each run")[0]
    assert pins(pub) == {"quickwin": [RUN]}
    res = orch("publish", "--no-hub", "--replace")
    assert res.exit_code == 0 and pins(pub) == {"quickwin": [SMOKE]}
    assert f"run `{SMOKE}`" in (pub / "README.md").read_text()
    write_results(pub, FULL, {"baseline": 0.41, "combined": 0.3}, t=2.0e9, n=50)
    assert orch("publish", "--no-hub").exit_code == 0  # at least the same n: it takes over
    assert pins(pub) == {"quickwin": [FULL]}
    assert (
        git(pub, "show", "HEAD:results/plots/published.json")
        == json.dumps({"quickwin": [FULL]}, indent=1) + "\n"
    )


def test_runs_named_explicitly_get_their_own_headings_and_plots(pub, orch):
    write_results(pub, SMOKE, {"baseline": 0.5, "combined": 0.45}, t=1.9e9, n=8)
    write_results(pub, "validation-20261125-100000-ab12", {"greedy": 0.4}, playbook="validation")
    assert orch("publish", "--no-hub").exit_code == 0
    assert headings(pub) == ["### quickwin", "### validation"]
    res = orch("publish", "--no-hub", RUN, SMOKE)
    assert res.exit_code == 0, res.output
    assert headings(pub) == [f"### {RUN}", f"### {SMOKE}", "### validation"]
    text = (pub / "README.md").read_text()
    links = [x for x in text.splitlines() if x.startswith("![CER against")]
    assert links == [
        f"![CER against seconds per image](results/plots/runs/{RUN}.png)",
        f"![CER against seconds per image](results/plots/runs/{SMOKE}.png)",
        "![CER against seconds per image](results/plots/validation.png)",
    ]
    plots = pub / "results" / "plots"
    assert (plots / "runs" / f"{RUN}.png").read_bytes() != (
        plots / "runs" / f"{SMOKE}.png"
    ).read_bytes()
    assert text.count("(results/plots/history/quickwin.png)") == 1
    assert pins(pub) == {
        "quickwin": [RUN, SMOKE],
        "validation": ["validation-20261125-100000-ab12"],
    }


def test_history_plot_has_every_run_with_intervals(pub, orch):
    write_results(pub, SMOKE, {"baseline": 0.5, "combined": 0.45}, t=1.9e9, n=8)
    assert orch("publish", "--no-hub").exit_code == 0
    png = pub / "results" / "plots" / "history" / "quickwin.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "![CER of each run of quickwin over time](results/plots/history/quickwin.png)"
        in (pub / "README.md").read_text()
    )
    runs = []
    for rid in (RUN, SMOKE):
        doc = json.loads((pub / "results" / rid / "results.json").read_text())
        doc["baseline"]["cer_ci"] = [doc["baseline"]["cer"] - 0.02, doc["baseline"]["cer"] + 0.03]
        runs.append((rid, doc["run"]["started_at"], doc))
    ax = history_figure(runs, "quickwin", {RUN}).axes[0]
    series = {c.get_label(): c for c in ax.containers}
    assert set(series) == {"baseline", "beam_search", "ensemble", "combined"}
    ys = list(series["baseline"].lines[0].get_ydata())
    assert ys == [0.42, 0.5]  # one point per run, oldest first
    bars = series["baseline"].lines[2][0].get_segments()
    assert [round(s[1][1] - s[0][1], 3) for s in bars] == [0.05, 0.05]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + f"\nn={n}"
        for t, n in ((1.8e9, 50), (1.9e9, 8))
    ]


def test_provenance_line_names_model_adapters_and_dataset_revision(pub, orch):
    path = pub / "results" / RUN / "results.json"
    doc = json.loads(path.read_text())
    doc["run"]["model"] = {
        "base": "Qwen/Qwen2.5-VL-3B-Instruct",
        "checkpoints": ["/ckpt/checkpoint-500", "/ckpt/checkpoint-1000"],
        "adapters": [
            {"name": "checkpoint-500", "sha256": "0123456789abcdef"},
            {"name": "checkpoint-1000", "sha256": "fedcba9876543210"},
        ],
    }
    doc["run"]["data"]["revision"] = "9a8b7c6d"
    path.write_text(json.dumps(doc))
    assert orch("publish", "--no-hub").exit_code == 0
    facts = next(x for x in (pub / "README.md").read_text().splitlines() if x.startswith("run `"))
    assert (
        "model `Qwen/Qwen2.5-VL-3B-Instruct` + adapters `checkpoint-500` (sha 01234567), "
        "`checkpoint-1000` (sha fedcba98)" in facts
    )
    assert "revision `9a8b7c6d`" in facts


def _record(root, run_id, state, exit_code: int):
    """A local run record (last seen `state`) and the run's folder on the `local` host."""
    doc = {"run_id": run_id, "host": "local", "playbook": "quickwin", "started_at": 1.9e9}
    remote = remote_dir_of(root) / "runs" / run_id
    remote.mkdir(parents=True, exist_ok=True)
    (remote / "run.json").write_text(json.dumps(doc))
    (remote / "exit_code").write_text(f"{exit_code}\n")
    (remote / "log.txt").write_text("done\n")
    folder = root / ".orch" / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps({**doc, "state": state}))


def test_runs_not_fetched_are_listed_and_fetch_fetches_them_first(pub, orch):
    write_results(pub, SMOKE, {"baseline": 0.3, "combined": 0.2}, t=1.9e9)
    remote = remote_dir_of(pub) / "runs"  # the finished run, still on the host only
    remote.mkdir(parents=True)
    shutil.move(pub / "results" / SMOKE, remote / SMOKE)
    _record(pub, SMOKE, "running", 0)
    _record(pub, "quickwin-20261125-080000-dead", "failed", 1)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 0
    assert res.stderr.startswith(
        f"orch: warning: runs not fetched: {SMOKE} (running when last seen); run `orch fetch` "
        "(or pass --fetch) to publish them"
    )
    assert "dead" not in res.stderr and f"run `{RUN}`" in (pub / "README.md").read_text()
    res = orch("publish", "--no-hub", "--fetch")
    assert res.exit_code == 0, res.output
    assert f"{SMOKE}: fetched (succeeded)" in res.stdout and "not fetched" not in res.stderr
    assert f"run `{SMOKE}`" in (pub / "README.md").read_text()


def test_first_publish_already_prefers_the_larger_run_to_a_newer_smoke_run(pub, orch):
    """Issue 20: an n=8 smoke run replaced the n=40 headline table (no pin yet: the rule is
    applied to the fetched runs oldest first)."""
    write_results(pub, SMOKE, {"baseline": 0.5, "combined": 0.45}, t=1.9e9, n=8)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 0 and f"newer {SMOKE} scored fewer lines (n=8)" in res.stdout
    assert pins(pub) == {"quickwin": [RUN]} and f"published {RUN}" in res.stdout
    assert f"run `{RUN}`" in (pub / "README.md").read_text()
