"""Bad input in orch.yaml and playbooks: one line naming the file and field, exit 2, before
anything is sent; and the pre-launch check on the host (missing checkpoint folders, unknown
adapters) in the launch's own round trip, before tmux starts the worker."""

import json
import subprocess
import sys

import pytest

from gpu_worker import precheck
from orchestrator import scripts
from tests.conftest import SAMPLES
from tests.sshd_server import free_port
from tests.test_jobs import demo_project

__all__ = ["demo_project"]  # the fixture, shared with test_jobs.py


def _one_line(res, exit_code=2):
    assert res.exit_code == exit_code, res.output
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
    return res.stderr


@pytest.mark.parametrize(
    "value, message",
    [
        (".inf", "orch.yaml: hosts.gpu1.timeout: expected a finite number, got inf"),
        (".nan", "orch.yaml: hosts.gpu1.timeout: expected a finite number, got nan"),
        ("-.inf", "orch.yaml: hosts.gpu1.timeout: expected a finite number, got -inf"),
        ("true", "orch.yaml: hosts.gpu1.timeout: expected a positive number, got True"),
    ],
)
def test_timeout_must_be_finite(project, orch, value, message):
    (project / "orch.yaml").write_text(f"hosts:\n  gpu1: {{host: h, timeout: {value}}}\n")
    assert message in _one_line(orch("status", "--host", "gpu1"))


def test_invalid_utf8_in_orch_yaml_names_line_and_field(project, orch):
    (project / "orch.yaml").write_bytes(b"hosts:\n  gpu1:\n    host: h\n    user: r\xffoot\n")
    err = _one_line(orch("status"))
    assert "orch.yaml: line 4: hosts.gpu1.user: not valid UTF-8 (byte 0xff)" in err


@pytest.fixture
def dead_host_project(project):
    """Host `gpu` is a closed port: had anything been sent, orch would exit 3, not 2."""
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu: {{host: 127.0.0.1, port: {free_port()}, timeout: 2}}\n"
    )
    (project / "playbooks" / "ocr.yaml").write_text(
        "name: ocr\nmodel: {base: ./m}\ndata: {source: data/sample}\n"
        "methods:\n  beam_search: {kind: beam, num_beams: 5}\n"
        "  sampled: {kind: sample, temperature: 0.7}\n"
    )
    return project


@pytest.mark.parametrize(
    "setting, message",
    [
        ("methods.beam_search.num_beams=0", "methods.beam_search.num_beams: expected an integer"),
        ("methods.beam_search.num_beams=true", "num_beams: expected an integer >= 1, got True"),
        ("methods.beam_search.num_beams=-3", "num_beams: expected an integer >= 1, got -3"),
        ("methods.beam_search.num_beams=2.5", "num_beams: expected an integer >= 1, got 2.5"),
        ("methods.sampled.temperature=.nan", "methods.sampled.temperature: expected a positive"),
        ("methods.sampled.temperature=.inf", "temperature: expected a positive number, got inf"),
        ("name=../../x", "ocr.yaml: name: '../../x' is not a safe name"),
        ('name="a\\n<!--"', "ocr.yaml: name: 'a\\n<!--' is not a safe name"),
        ("model.dtyp=bf16", "--set model.dtyp: ocr.yaml has no key 'model.dtyp' (did you mean"),
        ("generation.batch_size=[8", "--set generation.batch_size: value '[8' is not valid YAML"),
    ],
)
def test_bad_playbook_values_stop_before_anything_is_sent(
    dead_host_project, orch, setting, message
):
    res = orch("run", "ocr", "--host", "gpu", "--set", setting)
    assert message in _one_line(res)


def test_invalid_utf8_in_a_playbook(dead_host_project, orch):
    path = dead_host_project / "playbooks" / "ocr.yaml"
    path.write_bytes(path.read_bytes().replace(b"data/sample", b"data/s\xe9mple"))
    err = _one_line(orch("run", "ocr", "--host", "gpu"))
    assert "ocr.yaml: line 3: data.source: not valid UTF-8 (byte 0xe9)" in err


def test_invalid_yaml_names_the_line(dead_host_project, orch):
    (dead_host_project / "playbooks" / "ocr.yaml").write_text("name: ocr\nmodel: {base: ./m\n")
    err = _one_line(orch("run", "ocr", "--host", "gpu"))
    assert "ocr.yaml: cannot read: line 3: invalid YAML" in err


# -- the pre-launch check on the host ---------------------------------------------------------


def _checkpoints(folder, steps):
    for step in steps:
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    return folder


def _doc(base, ckpts, **methods):
    return {
        "model": {"base": str(base), "checkpoints": str(ckpts)},
        "data": {"source": str(SAMPLES)},
        "methods": methods or {"baseline": {"kind": "greedy"}},
    }


def test_precheck_rules(tmp_path):
    ckpts = _checkpoints(tmp_path / "ckpts", [50, 100])
    base = tmp_path / "base"
    base.mkdir()
    ok = _doc(
        base,
        ckpts,
        a={"kind": "greedy", "adapter": "checkpoint-50"},
        b={"kind": "ensemble", "checkpoints": ["checkpoint-100"]},
        c={"kind": "beam", "adapter": "base"},
        t={"backend": "tesseract"},
    )
    assert precheck.problems(ok, str(tmp_path)) == []
    bad = _doc(
        tmp_path / "nobase",
        ckpts,
        a={"kind": "greedy", "adapter": "checkpoint-75"},
        b={"kind": "combined", "checkpoints": ["checkpoint-50", "ckpt-9"]},
    )
    assert precheck.problems(bad, str(tmp_path)) == [
        f"model.base: {tmp_path / 'nobase'}: no such folder on this host",
        "methods.a.adapter: 'checkpoint-75' not among checkpoint-50, checkpoint-100",
        "methods.b.checkpoints: ckpt-9 not among checkpoint-50, checkpoint-100",
    ]
    missing = precheck.problems(_doc(base, "./nope"), str(tmp_path))
    assert missing == ["model.checkpoints: ./nope: no such checkpoint folder"]
    only_tesseract = {"methods": {"t": {"backend": "tesseract"}}, "model": {}}
    assert precheck.problems(only_tesseract, str(tmp_path)) == []
    assert scripts.PRECHECK_EXIT == precheck.EXIT_PROBLEM


def _remote_state(tmp_path, sshd):
    runs = sorted(p.name for p in (tmp_path / "remote" / "runs").glob("*"))
    tmux = subprocess.run(
        ["tmux", "ls"], env={"TMUX_TMPDIR": str(sshd.tmux_dir)}, capture_output=True, text=True
    )
    return runs, tmux.stdout


def test_missing_checkpoints_and_unknown_adapter_caught_before_the_job_starts(
    demo_project, orch, tmp_path, sshd
):
    base = tmp_path / "host-models" / "base"
    base.mkdir(parents=True)
    ckpts = _checkpoints(tmp_path / "host-models" / "ckpts", [1, 2])
    doc = _doc(base, tmp_path / "host-models" / "gone", baseline={"kind": "greedy"})
    (demo_project / "playbooks" / "ocr.yaml").write_text(json.dumps(doc))
    res = orch("run", "ocr", "--host", "gpu")
    err = _one_line(res)
    gone = tmp_path / "host-models" / "gone"
    assert f"gpu: playbook ocr: model.checkpoints: {gone}: no such checkpoint folder" in err
    assert "nothing was started" in err
    assert _remote_state(tmp_path, sshd) == ([], "")  # no run folder, no tmux session
    assert not (demo_project / ".orch" / "runs").exists() or not list(
        (demo_project / ".orch" / "runs").iterdir()
    )
    doc = _doc(base, ckpts, best={"kind": "beam", "num_beams": 3, "adapter": "checkpoint-3"})
    (demo_project / "playbooks" / "ocr.yaml").write_text(json.dumps(doc))
    err = _one_line(orch("run", "ocr", "--host", "gpu"))
    assert "methods.best.adapter: 'checkpoint-3' not among checkpoint-1, checkpoint-2" in err
    assert _remote_state(tmp_path, sshd) == ([], "")


def test_precheck_runs_as_a_module_on_the_host(tmp_path):
    """The module entry point, as the launch script calls it (exit status and stdout)."""
    book = tmp_path / "playbook.yaml"
    book.write_text(json.dumps(_doc(tmp_path, tmp_path / "none")))
    res = subprocess.run(
        [sys.executable, "-m", "gpu_worker.precheck", str(book)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(__import__("tests.conftest").conftest.REPO), "PATH": "/usr/bin"},
    )
    assert res.returncode == precheck.EXIT_PROBLEM
    assert res.stdout == f"model.checkpoints: {tmp_path / 'none'}: no such checkpoint folder\n"
