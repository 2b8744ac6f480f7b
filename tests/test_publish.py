"""orch publish and orch results on real git repositories, and the model card upload through
huggingface_hub's own client to a local stand-in Hub (HF_ENDPOINT)."""

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import git

RUN = "quickwin-20261124-101200-ab12"
USER_TEXT = "# Odia OCR\n\nOur model reads Odia lines.\n\n"
TAIL = "\n## Notes\n\nHand-written notes after the table.\n"
OLD_BLOCK = "<!-- orch:results:start -->\nold table\n<!-- orch:results:end -->\n"


def write_results(
    root: Path, run_id: str, cers: dict, playbook: str = "quickwin", t=1.8e9, n=50, model=None
):
    """A fetched run folder with a schema-valid results.json (`n` lines, `model`: run.model)."""
    folder = root / "results" / run_id
    folder.mkdir(parents=True)
    doc = {
        m: {
            "cer": c,
            "wer": min(1.0, c * 1.6),
            "exact_match": 0.1,
            "n": n,
            "failures": 0,
            "time_per_image_s": 0.05 * (i + 1),
            "images_per_s": 20 / (i + 1),
            "settings": {"kind": "greedy"},
        }
        for i, (m, c) in enumerate(cers.items())
    }
    doc["run"] = {
        "run_id": run_id,
        "playbook": playbook,
        "host": "gpu1",
        "gpu": "NVIDIA A6000",
        "code": {"commit": "abcdef1234567890", "dirty": False},
        "data": {
            "source": "/root/odia_ocr/data/lines",
            "split": "test",
            "n_samples": n,
            "seed": 42,
        },
        "model": model or {"base": "/models/Qwen2.5-VL-3B-Instruct", "checkpoints": []},
        "started_at": t,
        "ended_at": t + 60,
    }
    (folder / "results.json").write_text(json.dumps(doc))
    (folder / "log.txt").write_text("done\n")
    return folder


@pytest.fixture
def pub(tmp_path, monkeypatch):
    """A git project whose README has user text around the markers, and one fetched run."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "README.md").write_text(USER_TEXT + OLD_BLOCK + TAIL)
    (root / "orch.yaml").write_text("hub: {repo_id: me/odia-ocr}\n")
    (root / "other.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    write_results(
        root, RUN, {"baseline": 0.42, "beam_search": 0.36, "ensemble": 0.34, "combined": 0.301}
    )
    monkeypatch.chdir(root)
    return root


def commits(root):
    return git(root, "rev-list", "--count", "HEAD").strip()


def test_publish_writes_table_plot_and_commits_exactly_those(pub, orch):
    (pub / "other.py").write_text("x = 2\n")
    git(pub, "add", "other.py")  # the user's unrelated staged change
    (pub / "scratch.txt").write_text("untracked\n")
    res = orch("publish", "--no-hub")
    assert res.exit_code == 0, res.output
    text = (pub / "README.md").read_text()
    assert text.startswith(USER_TEXT) and text.endswith(TAIL)  # outside the markers: untouched
    assert "old table" not in text
    assert "| combined | **0.301** | -0.119 | 0.482 |" in text
    assert "| baseline | 0.420 | — |" in text
    assert f"run `{RUN}`" in text and "NVIDIA A6000" in text and "code `abcdef1234`" in text
    assert "![CER against seconds per image](results/plots/quickwin.png)" in text
    assert git(pub, "log", "-1", "--format=%s").strip() == (
        f"results: {RUN} — best CER 0.301 (combined), baseline 0.420"
    )
    changed = set(git(pub, "show", "--name-only", "--format=", "HEAD").split())
    assert changed == {
        "README.md",
        "results/plots/quickwin.png",
        "results/plots/history/quickwin.png",
        "results/plots/published.json",
        f"results/{RUN}/results.json",
        f"results/{RUN}/log.txt",
    }
    assert git(pub, "diff", "--cached", "--name-only").split() == ["other.py"]  # still staged
    assert "?? scratch.txt" in git(pub, "status", "--porcelain")
    png = pub / "results" / "plots" / "quickwin.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        assert img.size == (640, 420)
    before = commits(pub)
    again = orch("publish", "--no-hub")
    assert again.exit_code == 0 and "nothing new to commit" in again.stdout
    assert commits(pub) == before


def test_dirty_readme_is_refused_and_nothing_changes(pub, orch):
    (pub / "README.md").write_text(USER_TEXT + "my unsaved thoughts\n" + OLD_BLOCK + TAIL)
    before = commits(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1
    assert "README.md has uncommitted edits" in res.stderr and "--allow-dirty-readme" in res.stderr
    assert "my unsaved thoughts" in (pub / "README.md").read_text()
    assert "old table" in (pub / "README.md").read_text()
    assert commits(pub) == before and not (pub / "results" / "plots").exists()
    ok = orch("publish", "--no-hub", "--allow-dirty-readme")
    assert ok.exit_code == 0
    assert "my unsaved thoughts" in (pub / "README.md").read_text()


def test_missing_markers_append_a_results_section_and_broken_ones_stop(pub, orch):
    (pub / "README.md").write_text(USER_TEXT)
    git(pub, "commit", "-qam", "no markers")
    assert orch("publish", "--no-hub").exit_code == 0
    text = (pub / "README.md").read_text()
    assert text.startswith(USER_TEXT + "## Results\n\n<!-- orch:results:start -->\n")
    assert text.endswith("<!-- orch:results:end -->\n")
    broken = USER_TEXT + "<!-- orch:results:end -->\nx\n<!-- orch:results:start -->\n"
    (pub / "README.md").write_text(broken)
    git(pub, "commit", "-qam", "broken markers")
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1 and "fix them by hand" in res.stderr
    assert (pub / "README.md").read_text() == broken


def test_dry_run_shows_diff_and_plan_and_changes_nothing(pub, orch):
    before = commits(pub)
    res = orch("publish", "--dry-run")
    assert res.exit_code == 0
    assert "-old table" in res.stdout and "+| combined | **0.301**" in res.stdout
    assert f"commit message: results: {RUN}" in res.stdout
    assert "hub: model me/odia-ocr, commit to main" in res.stdout
    assert "combined cer 0.301" in res.stdout
    assert "old table" in (pub / "README.md").read_text()
    assert commits(pub) == before and not (pub / "results" / "plots").exists()


def test_push_sends_the_commit_to_the_upstream(pub, orch, tmp_path):
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git(pub, "remote", "add", "origin", str(bare))
    git(pub, "push", "-q", "-u", "origin", "main")
    res = orch("publish", "--no-hub", "--push")
    assert res.exit_code == 0, res.output
    assert "pushed to origin/main" in res.stdout
    assert git(bare, "log", "-1", "--format=%s", "main").startswith(f"results: {RUN}")


def test_newest_run_of_each_playbook_and_named_runs(pub, orch):
    write_results(
        pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40, "combined": 0.29}, t=1.9e9
    )
    write_results(
        pub,
        "validation-20261125-100000-ef56",
        {"greedy": 0.41, "beam_5": 0.37},
        playbook="validation",
    )
    assert orch("publish", "--no-hub").exit_code == 0
    text = (pub / "README.md").read_text()
    assert "quickwin-20261125-090000-cd34" in text and RUN not in text
    assert "### validation" in text and "| beam_5 | **0.370** | -0.040 |" in text
    res = orch("publish", "--no-hub", "../../etc")
    assert res.exit_code == 2 and "invalid run id" in res.stderr
    res = orch("publish", "--no-hub", "nope-20260101-000000-0000")
    assert res.exit_code == 1 and "run `orch fetch` first" in res.stderr


def test_results_compares_runs(pub, orch):
    write_results(pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40}, t=1.9e9)
    rows = json.loads(orch("results", "--json").stdout)
    assert [(r["run_id"], r["method"]) for r in rows][-2:] == [
        (RUN, "combined"),
        ("quickwin-20261125-090000-cd34", "baseline"),
    ]
    table = orch("results").stdout
    assert "quickwin-20261125-090000-cd34" in table and "0.400" in table


def stats_results(root: Path, run_id: str = "stats-20261126-120000-ef56") -> dict:
    """A fetched run whose statistics come from the worker's own summarize() on 200 synthetic
    lines: greedy ~30% CER, beam ~20% (clearly better), sample ~= greedy, broken failed on all."""
    import numpy as np

    from gpu_worker.summary import recommend, summarize

    rng = np.random.default_rng(3)
    words = lambda: " ".join("".join(rng.choice(list("abcdefghij"), size=5)) for _ in range(6))  # noqa: E731
    refs = [words() for _ in range(200)]
    lines = []
    for name, p in (("greedy", 0.3), ("beam", 0.2), ("sample", 0.3)):
        for i, ref in enumerate(refs):
            pred = "".join(c if rng.random() > p else "x" for c in ref)
            lines.append(
                {
                    "index": i,
                    "method": name,
                    "reference": ref,
                    "prediction": pred,
                    "seconds": {"greedy": 0.05, "beam": 0.2, "sample": 0.06}[name],
                }
            )
    for i, ref in enumerate(refs):
        lines.append(
            {
                "index": i,
                "method": "broken",
                "reference": ref,
                "prediction": None,
                "seconds": 0.0,
                "error": "RuntimeError: CUDA error",
            }
        )
    methods = [
        type("M", (), {"name": n, "settings": lambda self: {"kind": "greedy"}})()
        for n in ("greedy", "beam", "sample", "broken")
    ]
    doc = summarize(methods, lines, baseline="greedy", resamples=1000)
    doc["run"] = {
        "playbook": "stats",
        "baseline": "greedy",
        "bootstrap": {"resamples": 1000, "seed": 1, "confidence": 0.95},
        "data": {"source": "/data/lines", "split": "test", "n_samples": 200, "seed": 1},
        "started_at": 1.95e9,
    }
    doc["run"]["recommendation"] = recommend(doc, 0.01, "greedy")
    folder = root / "results" / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(doc))
    return doc


def test_table_shows_intervals_paired_deltas_sample_size_and_failed_rows(pub, orch):
    doc = stats_results(pub)
    res = orch("publish", "--no-hub", "stats-20261126-120000-ef56")
    assert res.exit_code == 0, res.output
    text = (pub / "README.md").read_text()
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    g, b = doc["greedy"], doc["beam"]
    assert rows["greedy"].startswith(
        f"| greedy | {g['cer']:.3f} ({g['cer_ci'][0]:.3f}–{g['cer_ci'][1]:.3f}) | — |"
    )
    vs = b["vs_baseline"]
    assert vs["significant"] and vs["p_value"] < 0.01 and vs["p_holm"] >= vs["p_value"]
    assert vs["p_holm"] > vs["p_value"]  # two methods against greedy: Holm doubles the smaller
    holm = f", Holm {vs['p_holm']:.3f}"
    assert rows["beam"].startswith(
        f"| beam | **{b['cer']:.3f}** ({b['cer_ci'][0]:.3f}–{b['cer_ci'][1]:.3f}) | "
        f"{vs['delta_cer']:+.3f} ({vs['ci'][0]:+.3f} to {vs['ci'][1]:+.3f}), "
        f"p={vs['p_value']:.3f}{holm} \\* |"
    )
    assert "\\*" not in rows["sample"] and not doc["sample"]["vs_baseline"]["significant"]
    assert rows["broken"] == "| broken | failed (200 of 200) | — | — | — | — | — | 200 |"
    assert "**" not in rows["broken"] and "**" not in rows["greedy"]
    need = doc["sample"]["vs_baseline"]["lines_needed"]
    assert "Sample size: n=200 lines." in text and f"sample ≈ {need:,} (Δ" in text
    assert need > 200 and "Rerun with `--set data.n_samples=N` or the full split" in text
    assert "Recommendation: beam is significantly better than the baseline greedy" in text
    assert (pub / "results" / "plots" / "stats.png").exists()
    view = orch("results").stdout
    assert "failed (200 of 200)" in view and f"{b['cer']:.3f} ({b['cer_ci'][0]:.3f}-" in view
    assert f"{vs['p_value']:.3g} (Holm {vs['p_holm']:.3g})" in view
    rows = {r["method"]: r for r in json.loads(orch("results", "--json").stdout)}
    assert rows["sample"]["lines_needed"] == need and rows["broken"]["cer"] is None


def test_invalid_newest_results_stops_publish_naming_the_file(pub, orch):
    """A corrupt newest run is never skipped in favour of an older one."""
    newer = write_results(pub, "quickwin-20261125-090000-cd34", {"baseline": 0.40}, t=1.9e9)
    (newer / "results.json").write_text("{not json")
    before = (pub / "README.md").read_text(), commits(pub)
    res = orch("publish", "--no-hub")
    assert res.exit_code == 1
    assert "results/quickwin-20261125-090000-cd34/results.json is invalid" in res.stderr
    assert "nothing was written" in res.stderr
    assert ((pub / "README.md").read_text(), commits(pub)) == before
    res = orch("publish", "--no-hub", "quickwin-20261125-090000-cd34")
    assert res.exit_code == 1 and "results.json is invalid" in res.stderr
    # naming a valid run goes on past the invalid one
    assert orch("publish", "--no-hub", RUN).exit_code == 0
    res = orch("results")
    assert res.exit_code == 0 and RUN in res.stdout
    assert "warning: results/quickwin-20261125-090000-cd34/results.json is invalid" in res.stderr


def test_plan_writes_nothing_and_apply_does_what_it_says(pub):
    from orchestrator.config import load_config
    from orchestrator.publish import PublishOptions, plan_publish
    from orchestrator.publish_steps import apply_plan

    cfg = load_config()
    plan = plan_publish(cfg, (), PublishOptions(to_hub=False))
    readme, plot = pub / "README.md", pub / "results" / "plots" / "quickwin.png"
    plots = pub.resolve() / "results" / "plots"
    assert plan.writes == [  # README.md last: an interruption before it leaves nothing to fix
        plots / "history" / "quickwin.png",
        plot.resolve(),
        plots / "published.json",
        readme.resolve(),
    ]
    assert "old table" in readme.read_text() and not plot.exists()
    before = commits(pub)
    done = apply_plan(cfg, plan)
    assert done.written == [str(p) for p in plan.writes] and done.commit
    assert int(commits(pub)) == int(before) + 1
    assert plan_publish(cfg, (), PublishOptions(to_hub=False)).writes == []
