"""orch.yaml validation, `orch init`, host resolution."""

from pathlib import Path

import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_full_config_loads(tmp_path):
    cfg = load_config(
        write(
            tmp_path / "orch.yaml",
            "defaults: {host: gpu1, results_dir: out}\n"
            "hosts:\n  gpu1: {host: 10.0.0.5, user: root, port: 2222, remote_dir: /root/x,"
            " env: {HF_HOME: /data/hf, N: 3}, hourly_rate: 0.8}\n"
            "hub: {repo_id: me/model}\npush: {include: [data]}\n",
        )
    )
    h = cfg.host(None)
    assert (h.name, h.hostname, h.user, h.port, h.remote_dir) == (
        "gpu1",
        "10.0.0.5",
        "root",
        2222,
        "/root/x",
    )
    assert h.env == {"HF_HOME": "/data/hf", "N": "3"}
    assert h.timeout == 15.0 and h.hourly_rate == 0.8
    assert cfg.hub.repo_id == "me/model" and cfg.hub.repo_type == "model"
    assert cfg.push_include == ("data",) and cfg.defaults.results_dir == "out"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "hosts:\n  gpu1: {host: h, port: abc}\n",
            "orch.yaml: hosts.gpu1.port: expected an integer",
        ),
        (
            "hosts:\n  gpu1: {host: h, prot: 22}\n",
            "orch.yaml: hosts.gpu1.prot: unknown key (did you mean 'port'?)",
        ),
        ("defualts: {}\n", "orch.yaml: defualts: unknown key (did you mean 'defaults'?)"),
        ("hosts: [a, b]\n", "orch.yaml: hosts: expected a mapping"),
        ("hub: {repo_type: model}\n", "orch.yaml: hub.repo_id: required"),
        (
            "hosts:\n  g: {host: h, timeout: -1}\n",
            "orch.yaml: hosts.g.timeout: expected a positive number",
        ),
        ("hosts: {a: 1\n", "orch.yaml: cannot read"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "orch.yaml", text))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_cli_reports_config_error_with_exit_2(project, orch):
    write(project / "orch.yaml", "hosts:\n  gpu1: {host: h, port: abc}\n")
    res = orch("push", "--host", "gpu1")
    assert res.exit_code == 2
    assert res.stderr.strip() == "orch: error: orch.yaml: hosts.gpu1.port: expected an integer"


def test_init_writes_a_starter_that_loads(tmp_path, monkeypatch, orch):
    monkeypatch.chdir(tmp_path)
    assert orch("init").exit_code == 0
    text = (tmp_path / "orch.yaml").read_text()
    assert "#" in text
    gpu1 = load_config(tmp_path / "orch.yaml").host("gpu1")
    assert (gpu1.user, gpu1.remote_dir) == ("root", "/root/odia_ocr")
    again = orch("init")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert (tmp_path / "orch.yaml").read_text() == text
    assert (tmp_path / ".gitignore").read_text() == ".orch/\n__pycache__/\n"
    example = yaml.safe_load((tmp_path / "playbooks" / "example.yaml").read_text())
    assert "{python}" in example["command"] and example["name"] == "example"
    (tmp_path / ".gitignore").write_text("*.log")  # a user's own file gains only what is missing
    assert orch("init", "--force").exit_code == 0
    assert (tmp_path / ".gitignore").read_text() == "*.log\n.orch/\n__pycache__/\n"


def test_local_host_is_built_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h = load_config().host("local")
    assert h.is_local and h.remote_dir == str(tmp_path.resolve() / ".orch" / "local")


def test_ssh_config_alias_is_a_host(tmp_path, isolated_home):
    (isolated_home / ".ssh").mkdir()
    (isolated_home / ".ssh" / "config").write_text(
        "Host lab\n  HostName 10.1.1.1\nHost *\n  User x\n"
    )
    cfg = load_config(write(tmp_path / "orch.yaml", "{}\n"))
    assert cfg.host("lab").hostname == "lab"
    with pytest.raises(ConfigError, match="unknown host 'lba'.*did you mean 'lab'"):
        cfg.host("lba")


def test_playbooks_are_the_projects_first_then_orchs_bundled(tmp_path, monkeypatch):
    from orchestrator.playbooks import BUNDLED, playbook_path

    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert playbook_path(config, "quickwin") == BUNDLED / "quickwin.yaml"
    own = tmp_path / "playbooks" / "quickwin.yaml"
    own.parent.mkdir()
    own.write_text("name: quickwin\n")
    assert playbook_path(config, "quickwin") == own
    with pytest.raises(ConfigError, match="known: demo, quickwin, train, validation"):
        playbook_path(config, "nope")
