"""The playbook spec shared by orchestrator and worker (contract/spec.py): defaults stated once,
the full spec `orch run` sends, `--set` checked against the spec's keys, the one JSONL reader."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from gpu_worker.contract import spec
from gpu_worker.contract.fsio import read_jsonl
from gpu_worker.provenance import code_identity
from gpu_worker.runner import load_playbook
from orchestrator import playbooks
from orchestrator.config import load_config
from orchestrator.errors import ConfigError
from orchestrator.playbooks import BUNDLED

QUICKWIN = yaml.safe_load((BUNDLED / "quickwin.yaml").read_text())
SMALL = {"model": {"base": "b"}, "data": {"source": "d"}, "methods": {"b": {"kind": "beam"}}}


def test_spec_is_standard_library_only():
    code = (
        "import sys, gpu_worker.contract.spec; "
        "print(sorted(m for m in ('yaml', 'torch', 'numpy', 'jiwer', 'rapidfuzz', 'PIL') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_full_spec_fills_every_default_once():
    full = spec.resolve(SMALL, "small")
    assert full["methods"]["b"] == {
        "kind": "beam",
        "backend": "transformers",
        "max_new_tokens": None,
        "adapter": "last",
        "num_beams": 5,
        "nbest": None,
    }
    assert full["generation"] == {"batch_size": 8, "max_new_tokens": 128, "compile": "auto"} | {
        "lora": "fast"
    }
    assert full["data"]["split"] == "test" and full["data"]["seed"] == 42
    assert full["scoring"]["baseline"] == "b" and full["name"] == "small"
    assert "slurm" not in full  # only what the playbook asks of the scheduler
    run = spec.parse_playbook(SMALL, "small")
    assert run.methods[0].num_beams == 5 and run.doc == full
    assert spec.parse_method("b", {"kind": "beam"}).num_beams == 5
    assert spec.parse_method("g", {"kind": "greedy"}).num_beams == 1  # no beams to set


def test_the_worker_reads_the_sent_spec_to_the_same_run(tmp_path):
    sent = spec.parse_playbook(QUICKWIN, "quickwin")
    path = tmp_path / "playbook.yaml"  # what orch writes into runs/<id>/
    path.write_text(yaml.safe_dump(sent.doc, sort_keys=False, allow_unicode=True))
    read = load_playbook(path)
    assert read == sent and read.doc == sent.doc and read.name == "quickwin"
    # spelling a default out does not change the playbook's identity
    explicit = {**SMALL, "methods": {"b": {"kind": "beam", "num_beams": 5}}}
    assert spec.parse_playbook(explicit).digest == spec.parse_playbook(SMALL).digest
    assert spec.parse_playbook({**SMALL, "data": {"source": "e"}}).digest != (
        spec.parse_playbook(SMALL).digest
    )


@pytest.mark.parametrize("value", ["true", "false"])
def test_num_beams_true_is_refused(value):
    with pytest.raises(spec.MethodError, match=r"methods.b.num_beams: expected an integer >= 1"):
        spec.parse_method("b", {"kind": "beam", "num_beams": yaml.safe_load(value)})


def test_set_is_checked_against_the_spec_not_the_file():
    book = json.loads(json.dumps(QUICKWIN))
    assert "dtype" not in book["model"]
    playbooks.apply_override(book, "model.dtype=bfloat16", "quickwin.yaml")
    playbooks.apply_override(book, "slurm.partition=gpu", "quickwin.yaml")
    playbooks.apply_override(book, "methods.baseline.max_new_tokens=64", "quickwin.yaml")
    run = spec.parse_playbook(book)
    assert run.model["dtype"] == "bfloat16" and run.methods[0].max_new_tokens == 64
    for key, message in (
        ("model.dtyp", "no key 'model.dtyp' (did you mean 'dtype'?)"),
        ("generaton.batch_size", "no key 'generaton' (did you mean 'generation'?)"),
        ("methods.beam_search.num_beam", "no key 'methods.beam_search.num_beam' (did you mean"),
        ("methods.baseline.num_beams", "no key 'methods.baseline.num_beams'"),  # a greedy method
        ("methods.beams.num_beams", "no key 'methods.beams' (did you mean 'beam_search'?)"),
        ("model.dtype.x", "no key 'model.dtype.x'"),
    ):
        expected = "^" + re.escape(f"--set {key}: quickwin.yaml has {message}")
        with pytest.raises(ConfigError, match=expected):
            playbooks.apply_override(book, f"{key}=1", "quickwin.yaml")


def test_set_value_that_is_not_yaml_is_an_error():
    book = json.loads(json.dumps(QUICKWIN))
    with pytest.raises(ConfigError, match=r"--set model.prompt: value '\[oops' is not valid YAML"):
        playbooks.apply_override(book, "model.prompt=[oops", "quickwin.yaml")
    assert book["model"]["prompt"] == "Extract the text in this image."
    playbooks.apply_override(book, "model.prompt=read it", "quickwin.yaml")
    assert book["model"]["prompt"] == "read it"


def test_free_sections_are_checked_against_the_file():
    book = {"command": "python job.py", "job": {"steps": 3}}
    playbooks.apply_override(book, "job.steps=5", "job.yaml")
    assert book["job"] == {"steps": 5}
    with pytest.raises(ConfigError, match=r"no key 'job.stpes' \(did you mean 'steps'\?\)"):
        playbooks.apply_override(book, "job.stpes=5", "job.yaml")


def test_orch_run_resolves_the_full_spec(project):
    (project / "playbooks" / "ocr.yaml").write_text(
        "model: {base: ./m}\ndata: {source: data/sample}\nmethods:\n  beam: {kind: beam}\n"
    )
    book = playbooks.resolve(load_config(), "ocr", ("model.dtype=bfloat16",))
    assert book.doc == spec.parse_playbook(book.doc).doc  # full: resolves to itself
    assert book.doc["model"]["dtype"] == "bfloat16"
    assert book.doc["methods"]["beam"]["num_beams"] == 5
    assert yaml.safe_load(book.to_yaml()) == book.doc
    (project / "playbooks" / "job.yaml").write_text("command: echo hi\njob: {steps: 1}\n")
    assert playbooks.resolve(load_config(), "job").doc == {
        "command": "echo hi",
        "job": {"steps": 1},
    }


def test_one_jsonl_reader(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"index": 0}\n\n{"index": 1}\n{"index": 2, "pre')
    with pytest.raises(ValueError, match=r"predictions.jsonl:4: invalid JSON"):
        read_jsonl(path)
    assert read_jsonl(path, repair_tail=True) == [{"index": 0}, {"index": 1}]
    assert path.read_text() == '{"index": 0}\n\n{"index": 1}\n'  # the torn line is cut off
    path.write_text('{"index": 0}\nnot json\n{"index": 1}\n')
    with pytest.raises(ValueError, match=r":2: invalid JSON"):
        read_jsonl(path, repair_tail=True)  # only a torn LAST line is repaired
    assert read_jsonl(tmp_path / "absent.jsonl", repair_tail=True) == []


def test_code_identity_warns_when_it_cannot_be_read(tmp_path):
    said: list[str] = []
    assert code_identity(str(tmp_path), said.append) is None
    assert "missing" in said[-1] and ".orch-identity.json" in said[-1]
    (tmp_path / ".orch-identity.json").write_text("{broken")
    assert code_identity(str(tmp_path), said.append) is None and "unreadable" in said[-1]
    (tmp_path / ".orch-identity.json").write_text('{"commit": "abc", "dirty": false}')
    assert code_identity(str(tmp_path), said.append) == {"commit": "abc", "dirty": False}
