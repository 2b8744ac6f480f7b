"""Small things seen in a day of use: `--set methods.NEW={...}` adds a method, doctor counts the
checkpoints of a folder, `score --method M --baseline B`, "identical" instead of "lines needed 2",
and the worker's per-batch progress lines and per-line edit counts."""

import json
import subprocess
import sys

import pytest
import yaml

from gpu_worker import stats
from gpu_worker.contract.schema import parse_progress_line
from orchestrator import readme
from orchestrator.config import HostConfig, load_config
from orchestrator.doctor import check_script
from orchestrator.errors import ConfigError
from orchestrator.playbooks import resolve
from tests.conftest import SAMPLES


def test_set_adds_a_whole_new_method(project):
    (project / "playbooks" / "ev.yaml").write_text(
        "model: {tiny: true}\ndata: {source: data/test, n_samples: 5}\n"
        "methods:\n  baseline: {kind: greedy}\n"
    )
    config = load_config()
    book = resolve(config, "ev", ("methods.beam2={kind: beam, num_beams: 2}",))
    assert list(book.doc["methods"]) == ["baseline", "beam2"]
    assert book.doc["methods"]["beam2"]["num_beams"] == 2
    with pytest.raises(ConfigError, match="methods.beam2.kind: unknown 'bem'"):
        resolve(config, "ev", ("methods.beam2={kind: bem}",))
    with pytest.raises(ConfigError, match="no key 'methods.nosuch'"):
        resolve(config, "ev", ("methods.nosuch.num_beams=3",))  # a setting of no method
    renamed = resolve(config, "ev", ("name=ev_big",))
    assert (renamed.name, renamed.file, renamed.spec.name) == ("ev_big", "ev", "ev_big")


def test_doctor_counts_the_checkpoints_in_a_folder(tmp_path):
    ckpts = tmp_path / "ckpts"
    for step in (100, 200, 300, 400, 500):
        (ckpts / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / "base").mkdir()
    (tmp_path / "one" / "adapter").mkdir(parents=True)
    host = HostConfig("local", "localhost", remote_dir=str(tmp_path / "remote"), python="true")
    paths = [str(tmp_path / "base"), str(ckpts), f"{ckpts}/checkpoint-[12]*", str(tmp_path / "one")]
    res = subprocess.run(["bash", "-c", check_script(host, paths)], capture_output=True, text=True)
    seen = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    assert [seen[f"path{i}"] for i in range(4)] == ["1", "5", "2", "1"]


def test_score_with_method_and_baseline(tmp_path):
    rows = []
    for i in range(20):
        ref = f"line {i} ଓଡ଼ିଆ"
        rows.append({"index": i, "method": "greedy", "reference": ref, "prediction": ref[:-1]})
        rows.append({"index": i, "method": "beam", "reference": ref, "prediction": ref})
        rows.append({"index": i, "method": "other", "reference": ref, "prediction": ""})
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "gpu_worker", "score", str(path)]
    res = subprocess.run([*cmd, "--method", "beam", "--baseline", "greedy"], capture_output=True)
    assert res.returncode == 0, res.stderr
    beam = json.loads(res.stdout)
    assert beam["cer"] == 0 and beam["vs_baseline"]["method"] == "greedy"
    assert beam["vs_baseline"]["delta_cer"] < 0 and beam["vs_baseline"]["n"] == 20
    bad = subprocess.run([*cmd, "--method", "beam", "--baseline", "nosuch"], capture_output=True)
    assert bad.returncode == 2 and b"--baseline nosuch: not a method" in bad.stderr


def test_identical_methods_say_identical_not_lines_needed():
    lengths = [30] * 40
    edits = [i % 7 for i in range(40)]
    import numpy as np

    res = stats.paired(np.array(edits), np.array(edits), np.array(lengths), 200, seed=1)
    assert res.identical and res.lines_needed == 0 and res.p_value == 1.0
    vs = {"method": "a", **res.to_json()}
    body = {"cer": 0.1, "n": 40, "vs_baseline": vs}
    table = readme.RunTable("r1", "p", {"run": {}, "a": {"cer": 0.1, "n": 40}, "b": body})
    line = readme.sample_size_line(table)
    assert "b: identical" in line and "≈ 2" not in line and "Rerun" not in line
    from orchestrator.comparison import ComparisonRow
    from orchestrator.render_results import view_cells

    scored = {"wer": 0.2, "exact_match": 0.0, "failures": 0, "time_per_image_s": 1.0,
              "images_per_s": 1.0, **body}  # fmt: skip
    assert view_cells(ComparisonRow.from_results("r1", "p", 0.0, "b", scored))[4] == "identical"
    different = stats.paired(np.array(edits), np.array(edits[1:] + edits[:1]), np.array(lengths))
    assert not different.identical and different.lines_needed >= 2


def test_worker_logs_a_progress_line_per_batch_and_counts_per_line(tmp_path, tiny_model):
    from gpu_worker.runner import run

    doc = {
        "model": {"base": str(tiny_model / "base"), "checkpoints": str(tiny_model / "checkpoints")},
        "data": {"source": str(SAMPLES), "n_samples": 6, "seed": 1, "script": "none"},
        "generation": {"batch_size": 3, "max_new_tokens": 4},
        "methods": {"greedy": {"kind": "greedy"}},
    }
    book = tmp_path / "pb.yaml"
    book.write_text(yaml.safe_dump(doc))
    logged: list[str] = []
    run(book, tmp_path / "out", log=logged.append)
    said = [p for p in map(parse_progress_line, logged) if p is not None]
    assert [(p["method"], p["step"], p["total"]) for p in said] == [
        ("greedy", 3, 6),
        ("greedy", 6, 6),
    ]
    assert all(p["images_per_s"] > 0 for p in said)
    lines = [
        json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().split("\n") if x
    ]
    assert len(lines) == 6
    for line in lines:
        assert line["chars"] > 0 and line["cer"] == pytest.approx(
            line["char_edits"] / line["chars"]
        )
