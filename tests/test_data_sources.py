"""Data as users have it: a held-out part of a train-only dataset (checked against `datasets`
itself), a missing split, path-like sources that do not exist, the launch pre-check refusing a
missing data folder, Hub datasets read offline from both local caches (built by the libraries
from the stand-in Hub), per-group figures in results.json, the README and the card, and failed
images named in the log."""

import io
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from gpu_worker import precheck
from gpu_worker.contract.spec import DataSpec
from gpu_worker.data import DataError, Samples, holdout_split, is_path_like, selected_indices
from gpu_worker.runner import run
from tests.conftest import REPO, SAMPLES
from tests.hub_server import DatasetRepo, HubServer, Repo
from tests.test_bad_input import _one_line, _remote_state
from tests.test_jobs import demo_project

__all__ = ["demo_project"]
ROWS = [json.loads(x) for x in (SAMPLES / "labels.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("n, size, seed", [(40, 0.1, 42), (203, 0.25, 7), (50, 5, 0)])
def test_holdout_is_train_test_split(n, size, seed):
    import datasets

    split = datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(
        test_size=size, seed=seed
    )
    train, test = holdout_split(n, {"test_size": size, "seed": seed})
    assert test == split["test"]["i"] and train == split["train"]["i"]
    spec = DataSpec(source="x", n_samples=3, seed=1, holdout={"test_size": size, "seed": seed})
    chosen = selected_indices(n, spec)
    assert len(chosen) == 3 and set(chosen) <= set(test)
    with pytest.raises(DataError, match="leaves no test or no train rows"):
        holdout_split(3, {"test_size": 3, "seed": 1})


@pytest.fixture(scope="module")
def train_only(tmp_path_factory):
    """The sample lines as a `datasets` folder with only a `train` split (as the user's)."""
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [str(SAMPLES / r["image"]) for r in ROWS], "text": [r["text"] for r in ROWS]}
    ).cast_column("image", datasets.Image())
    folder = tmp_path_factory.mktemp("ds") / "lines"
    datasets.DatasetDict({"train": ds}).save_to_disk(str(folder))
    return folder, ds


def test_holdout_run_scores_exactly_the_held_out_rows(tmp_path, tiny_model, train_only):
    folder, ds = train_only
    book = tmp_path / "pb.yaml"
    doc = {
        "model": {"base": str(tiny_model / "base")},
        "data": {
            "source": str(folder),
            "split": "train",
            "holdout": {"test_size": 0.1, "seed": 42},
            "script": "none",
        },
        "generation": {"batch_size": 4, "max_new_tokens": 2},
        "methods": {"base": {"kind": "greedy"}},
    }
    book.write_text(yaml.safe_dump(doc))
    results = run(book, tmp_path / "o", log=lambda m: None)
    expected = ds.add_column("i", list(range(len(ds)))).train_test_split(test_size=0.1, seed=42)
    lines = [json.loads(x) for x in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(x["index"] for x in lines) == sorted(expected["test"]["i"])
    assert [x["reference"] for x in sorted(lines, key=lambda x: x["index"])] == [
        ROWS[i]["text"] for i in sorted(expected["test"]["i"])
    ]
    assert results["base"]["n"] == 4 and results["run"]["data"]["holdout"] == {
        "test_size": 0.1,
        "seed": 42,
    }


def test_missing_split_is_one_line_listing_the_splits(tmp_path, train_only):
    folder, _ = train_only
    book = tmp_path / "pb.yaml"
    book.write_text(
        yaml.safe_dump({"data": {"source": str(folder)}, "methods": {"t": {"kind": "tesseract"}}})
    )
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(tmp_path / "o")]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert errors == [
        f"gpu_worker: error: data.split: 'test' not in {folder} (splits: train); set "
        "data.split, or data.holdout to hold out rows of a split"
    ]
    assert precheck.data_problems({"source": str(folder), "split": "test"}, str(tmp_path)) == [
        f"data.split: 'test' not in {folder} (splits: train)"
    ]


def test_path_like_missing_source_is_no_such_folder_never_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a lookup would hang
    (tmp_path / "lines").mkdir()
    for source in ("./gone", "data/gone", "/gone/x", "~/gone", "lines/gone", "a/b/c", "gone/"):
        started = time.monotonic()
        with pytest.raises(DataError, match=f"data.source: {source}: no such folder on this host"):
            Samples(DataSpec(source=source), str(tmp_path))
        assert time.monotonic() - started < 1
        assert precheck.data_problems({"source": source}, str(tmp_path)) == [
            f"data.source: {source}: no such folder on this host"
        ]
    assert not is_path_like("someone/lines", str(tmp_path)) and not is_path_like("mnist")
    assert precheck.data_problems({"source": "someone/lines"}, str(tmp_path)) == []  # the worker's


def test_precheck_refuses_a_missing_data_folder_nothing_started(demo_project, orch, tmp_path, sshd):
    (demo_project / "playbooks" / "ocr.yaml").write_text(
        "name: ocr\ndata: {source: data/unpushed}\nmethods:\n  t: {kind: tesseract}\n"
    )
    err = _one_line(orch("run", "ocr", "--host", "gpu"))
    assert (
        "gpu: playbook ocr: data.source: data/unpushed: no such folder on this host; "
        "nothing was started"
    ) in err
    assert _remote_state(tmp_path, sshd) == ([], "")  # no run folder, no tmux session


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


FILL = """
from huggingface_hub import snapshot_download
import datasets
snapshot_download("someone/snap", repo_type="dataset")
datasets.load_dataset("someone/arrow")
"""
READ = """
import json
from gpu_worker.data import Samples, DataError
from gpu_worker.contract.spec import DataSpec
out = {}
for name in ("someone/snap", "someone/arrow"):
    s = Samples(DataSpec(source=name, split="train"))
    out[name] = [len(s), s.text(1)]
try:
    Samples(DataSpec(source="someone/snap"))
except DataError as exc:
    out["split"] = str(exc)
try:
    Samples(DataSpec(source="someone/absent", split="train"))
except DataError as exc:
    out["absent"] = str(exc)
print(json.dumps(out))
"""


def test_hub_dataset_names_load_offline_from_the_local_caches(tmp_path):
    """`someone/snap` only in the hub's snapshot cache (snapshot_download), `someone/arrow`
    only in the datasets cache (load_dataset, then its hub files removed): both load offline."""
    rows = [{"image": {"bytes": (SAMPLES / r["image"]).read_bytes()}, "text": r["text"]}
            for r in ROWS[:5]]  # fmt: skip
    home = tmp_path / "hf"
    with HubServer() as hub:
        for name in ("someone/snap", "someone/arrow"):
            hub.datasets[name] = DatasetRepo({"data/train-00000-of-00001.parquet": _parquet(rows)})
        res = _python(FILL, {"HF_ENDPOINT": hub.url, "HF_HOME": str(home)})
        assert res.returncode == 0, res.stderr
    assert (home / "hub" / "datasets--someone--snap" / "refs" / "main").is_file()
    assert (home / "datasets" / "someone___arrow").is_dir()
    shutil.rmtree(home / "hub" / "datasets--someone--arrow")
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    res = _python(READ, {**offline, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["someone/snap"] == out["someone/arrow"] == [5, ROWS[1]["text"]]
    assert out["split"].startswith("data.split: 'test' not in someone/snap (splits: train)")
    assert out["absent"].startswith(
        "data.source: someone/absent: not in the local Hugging Face cache and the host is offline"
    )


@pytest.fixture(scope="module")
def grouped(tiny_model, tmp_path_factory):
    """12 sample lines with a `category` column, line-03.png corrupt; two methods."""
    tmp = tmp_path_factory.mktemp("grouped")
    data = tmp / "data"
    data.mkdir()
    with open(data / "labels.jsonl", "w", encoding="utf-8") as f:
        for i, row in enumerate(ROWS[:12]):
            shutil.copy(SAMPLES / row["image"], data / row["image"])
            kind = "printed" if i % 3 else "handwritten"
            f.write(json.dumps({**row, "category": kind}, ensure_ascii=False) + "\n")
    (data / "line-03.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    doc = {
        "model": {"base": str(tiny_model / "base"), "checkpoints": str(tiny_model / "checkpoints")},
        "data": {"source": str(data), "script": "none"},
        "generation": {"batch_size": 4, "max_new_tokens": 6},
        "scoring": {"group_by": "category", "bootstrap": 200},
        "methods": {"base": {"kind": "greedy", "adapter": "base"}, "tuned": {"kind": "greedy"}},
    }
    (tmp / "pb.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    said: list[str] = []
    results = run(tmp / "pb.yaml", tmp / "o", log=said.append)
    lines = [json.loads(x) for x in (tmp / "o" / "predictions.jsonl").read_text().splitlines()]
    return results, lines, said


def test_group_by_figures_in_results(grouped):
    from gpu_worker.metrics import score_pair

    results, lines, _ = grouped
    for method in ("base", "tuned"):
        groups = results[method]["groups"]
        assert sorted(groups) == ["handwritten", "printed"]
        assert groups["handwritten"]["n"] == 4 and groups["printed"]["n"] == 8
        for name, body in groups.items():
            mine = [x for x in lines if x["method"] == method and x["group"] == name]
            scores = [score_pair(x["reference"], x["prediction"] or "") for x in mine]
            edits, chars = sum(s.char_edits for s in scores), sum(s.chars for s in scores)
            assert body["cer"] == pytest.approx(edits / chars)
            assert body["cer_ci"][0] <= body["cer"] <= body["cer_ci"][1]
    vs = results["tuned"]["groups"]["printed"]["vs_baseline"]
    assert vs["method"] == "base" and vs["n"] == 8
    assert results["base"]["groups"]["printed"]["vs_baseline"] is None


def test_failed_image_is_named_in_the_log(grouped):
    _, _, said = grouped
    failed = [line for line in said if "failed:" in line]
    assert failed == [
        "base: image 3 (line-03.png) failed: UnidentifiedImageError: cannot identify image "
        f"file '{failed[0].split(chr(39))[1]}'",
        failed[1],
    ]
    assert failed[1].startswith("tuned: image 3 (line-03.png) failed: UnidentifiedImageError")


def test_group_table_in_readme_and_card(grouped, tmp_path, monkeypatch):
    from orchestrator import readme
    from tests.conftest import git
    from tests.test_publish_hub import orch_sub

    results, _, _ = grouped
    table = readme.RunTable("r1", "grouped", results)
    text = readme.render_run(table)
    assert "| category | method | CER (95% CI) | Δ CER vs baseline | WER (95% CI) | n |" in text
    printed = results["tuned"]["groups"]["printed"]
    assert f"| printed | tuned | {printed['cer']:.3f} ({printed['cer_ci'][0]:.3f}–" in text
    assert text.index("| handwritten | base |") > text.index("| tuned |")  # under the table
    root = tmp_path / "proj"
    (root / "results" / "r1").mkdir(parents=True)
    (root / "results" / "r1" / "results.json").write_text(json.dumps(results))
    (root / "README.md").write_text("# OCR\n")
    (root / "orch.yaml").write_text("hub: {repo_id: me/odia-ocr}\n")
    git(root, "init", "-q")
    git(root, "add", "README.md", "orch.yaml")
    git(root, "commit", "-qm", "init")
    with HubServer() as hub:
        hub.repos["me/odia-ocr"] = Repo(readme=b"---\nlicense: apache-2.0\n---\n# card\n")
        monkeypatch.setenv("TEST_HF_ENDPOINT", hub.url)
        res = orch_sub(root, "publish")
        assert res.returncode == 0, res.stderr
        card = hub.repos["me/odia-ocr"].commits[-1]["content"].decode()
    assert "| category | method | CER (95% CI) |" in card
    assert f"| printed | tuned | {printed['cer']:.3f}" in card


@pytest.mark.parametrize(
    "data, scoring, message",
    [
        ({"script": "odai"}, {}, "data.script: unknown 'odai' (did you mean 'odia'?); known: odia"),
        ({"holdout": {"test_size": 0.1, "sed": 1}}, {}, "data.holdout.sed: unknown setting"),
        ({"holdout": {"test_size": 1.5}}, {}, "data.holdout.test_size: expected a fraction"),
        ({}, {"preflight": "maybe"}, "scoring.preflight: expected on or off, got 'maybe'"),
        ({}, {"fail_on_noop": "yes"}, "scoring.fail_on_noop: expected true or false"),
    ],
)
def test_new_settings_are_checked_with_the_playbook(data, scoring, message):
    from gpu_worker.contract.spec import PlaybookError, parse_playbook

    doc = {"data": {"source": "d", **data}, "scoring": scoring, "methods": {"t": {}}}
    doc["methods"]["t"] = {"kind": "tesseract"}
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(doc)
    assert str(caught.value).startswith(message)
    ok = parse_playbook({**doc, "data": {"source": "d", "holdout": {"test_size": 0.1}},
                         "scoring": {"preflight": False}})  # fmt: skip
    assert ok.data.holdout == {"test_size": 0.1, "seed": 42} and not ok.preflight
