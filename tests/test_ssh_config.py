"""~/.ssh/config read as OpenSSH reads it: orch's resolution equals `ssh -G`'s (and the
paramiko fallback's, for what it supports) for a config using Match, Include, wildcards,
negations and tokens; real connections prove UserKnownHostsFile and StrictHostKeyChecking."""

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.errors import HostKeyChanged, HostKeyError
from orchestrator.transport import open_host, ssh_config
from tests.sshd_server import keygen

CONFIG = """\
Include {d}/conf.d/*.conf
Host gpu* !gpu-old
  HostName %h.cluster.test
  User alice
  Port 2201
  IdentityFile %d/.ssh/id_%h
  IdentitiesOnly yes
  UserKnownHostsFile {d}/kh_%h {d}/kh_shared
  StrictHostKeyChecking yes
Match host bastion
  User jump
  Port 2022
Host gpu-old
  HostName old.cluster.test
  ProxyJump bastion,ops@jump2:2200
  StrictHostKeyChecking accept-new
Host *
  StrictHostKeyChecking ask
"""
LAB = "Host lab\n  HostName 10.9.8.7\n  User labuser\n  StrictHostKeyChecking no\n"
ALIASES = ["gpu1", "gpu-old", "lab", "bastion", "other"]
HOME = pwd.getpwuid(os.getuid()).pw_dir


@pytest.fixture
def ssh_cfg(tmp_path, monkeypatch):
    """The config above in tmp_path; HOME is the passwd home so `%d` and `~` agree with ssh."""
    monkeypatch.setenv("HOME", HOME)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-lab.conf").write_text(LAB)
    path = tmp_path / "config"
    path.write_text(CONFIG.format(d=tmp_path))
    return path


def ssh_g(alias, path):
    """`ssh -G` parsed here, independently of orch: {option: [values]}."""
    out = subprocess.run(
        ["ssh", "-G", "-F", str(path), alias], capture_output=True, text=True, check=True
    ).stdout
    got = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        got.setdefault(key, []).append(value)
    return got


def expected(alias, path):
    g = ssh_g(alias, path)
    default_ids = ssh_g("x", "/dev/null")["identityfile"]
    strict = {"true": "yes", "false": "no"}.get(g["stricthostkeychecking"][0])
    return {
        "hostname": g["hostname"][0],
        "user": g["user"][0],
        "port": int(g["port"][0]),
        "identity_files": tuple(  # ssh expands IdentityFile tokens only when loading the key
            p.replace("%d", HOME).replace("%h", g["hostname"][0]).replace("~", HOME, 1)
            for p in (g["identityfile"] if g["identityfile"] != default_ids else [])
        ),
        "identities_only": g["identitiesonly"][0] == "yes",
        "proxy_jump": g.get("proxyjump", [None])[0],
        "known_hosts_files": tuple(g["userknownhostsfile"][0].split()),
        "strict_host_key_checking": strict or g["stricthostkeychecking"][0],
    }


def as_dict(opts):
    return {
        "hostname": opts.hostname,
        "user": opts.user,
        "port": opts.port,
        "identity_files": opts.identity_files,
        "identities_only": opts.identities_only,
        "proxy_jump": opts.proxy_jump,
        "known_hosts_files": opts.known_hosts_files,
        "strict_host_key_checking": opts.strict_host_key_checking,
    }


@pytest.mark.parametrize("alias", ALIASES)
def test_resolution_equals_ssh_G(ssh_cfg, alias):
    opts = ssh_config.resolve(alias, str(ssh_cfg))
    assert opts.source == "ssh -G"
    assert as_dict(opts) == expected(alias, ssh_cfg)


def test_resolution_values_are_what_the_config_says(ssh_cfg, tmp_path):
    home = HOME
    gpu = ssh_config.resolve("gpu1", str(ssh_cfg))
    assert (gpu.hostname, gpu.user, gpu.port) == ("gpu1.cluster.test", "alice", 2201)
    assert gpu.identity_files == (f"{home}/.ssh/id_gpu1.cluster.test",) and gpu.identities_only
    assert gpu.known_hosts_files == (
        f"{tmp_path}/kh_gpu1.cluster.test",
        f"{tmp_path}/kh_shared",
    )
    assert gpu.checks_strictly and gpu.proxy_jump is None
    old = ssh_config.resolve("gpu-old", str(ssh_cfg))  # negated in `Host gpu* !gpu-old`
    assert (old.hostname, old.port, old.proxy_jump) == (
        "old.cluster.test",
        22,
        "bastion,ops@jump2:2200",
    )
    assert old.strict_host_key_checking == "accept-new" and not old.checks_strictly
    assert ssh_config.resolve("bastion", str(ssh_cfg)).port == 2022  # Match host
    lab = ssh_config.resolve("lab", str(ssh_cfg))  # from the Include
    assert (lab.hostname, lab.user, lab.strict_host_key_checking) == ("10.9.8.7", "labuser", "no")
    known = {a: ssh_config.is_configured(a, str(ssh_cfg)) for a in ["gpu7", "lab", "zzz"]}
    assert known == {"gpu7": True, "lab": True, "zzz": False}  # `Host *` alone does not count
    assert ssh_config.literal_hosts(str(ssh_cfg)) == {"gpu-old", "lab"}


@pytest.mark.parametrize("alias", ALIASES)
def test_paramiko_fallback_agrees_with_ssh_G(ssh_cfg, alias, monkeypatch):
    want = expected(alias, ssh_cfg)
    monkeypatch.setattr(ssh_config, "ssh_client", lambda: None)
    got = ssh_config.resolve(alias, str(ssh_cfg))
    assert got.source == "paramiko"
    got = as_dict(got)
    if got["user"] is None:  # ssh fills in the local user; paramiko leaves it to the client
        got["user"] = want["user"]
    assert got == want


# -- real connections through the config, against the test sshd --------------------------------


def write_config(home, text):
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "config").write_text(text)
    return ssh / "config"


def real_ssh(home, alias):
    """The OpenSSH client itself, on the same config (-F: ssh reads the passwd home's)."""
    return subprocess.run(
        ["ssh", "-F", str(home / ".ssh" / "config"), "-o", "BatchMode=yes", alias, "echo ok"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def host_for(name):
    return open_host(load_config().host(name))


def block(sshd, extra=""):
    return (
        f"  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  IdentitiesOnly yes\n{extra}"
    )


def test_wildcard_match_and_include_reach_the_host(project, sshd, isolated_home, orch):
    conf_d = isolated_home / ".ssh" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "lab.conf").write_text(f"Host lab-*\n  HostName 127.0.0.1\n  Port {sshd.port}\n")
    write_config(
        isolated_home,
        f"Include {conf_d}/*.conf\n"
        f"Match host 127.0.0.1\n  User {sshd.user}\n  IdentityFile {sshd.client_key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {isolated_home}/.ssh/known_hosts\n"
        "Host named\n  HostName 192.0.2.1\n",
    )
    (isolated_home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())
    with host_for("lab-7") as h:  # matched only by the wildcard in the included file
        assert h.run("echo ok").text == "ok\n"
    assert real_ssh(isolated_home, "lab-7").stdout == "ok\n"
    res = orch("hosts", "list")  # a Match block used to crash every command (KeyError: 'host')
    assert res.exit_code == 0 and "named" in res.stdout


def _other_key_line(sshd, tmp_path):
    keygen(tmp_path / "impostor")
    kind, blob = (tmp_path / "impostor.pub").read_text().split()[:2]
    return f"[127.0.0.1]:{sshd.port} {kind} {blob}\n"


def test_user_known_hosts_file_with_a_different_key_is_refused_as_changed(
    project, sshd, isolated_home, tmp_path, orch
):
    custom = tmp_path / "custom_known_hosts"
    custom.write_text(_other_key_line(sshd, tmp_path))
    write_config(isolated_home, "Host kh\n" + block(sshd, f"  UserKnownHostsFile {custom}\n"))
    (isolated_home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())  # not used
    assert real_ssh(isolated_home, "kh").returncode == 255  # ssh refuses it ...
    with pytest.raises(HostKeyChanged, match="CHANGED"):  # ... and so does orch
        host_for("kh").run("true")
    (project / "orch.yaml").write_text(f"hosts:\n  gpu: {{host: kh, remote_dir: {tmp_path}/r}}\n")
    res = orch("push", "--host", "gpu", "--dry-run")
    assert res.exit_code == 3 and "CHANGED" in res.stderr


def test_key_only_in_user_known_hosts_file_is_accepted(
    project, sshd, isolated_home, tmp_path, orch
):
    custom = tmp_path / "custom_known_hosts"
    custom.write_text(sshd.known_hosts_line())
    write_config(isolated_home, "Host kh\n" + block(sshd, f"  UserKnownHostsFile {custom}\n"))
    assert not (isolated_home / ".ssh" / "known_hosts").exists()
    assert real_ssh(isolated_home, "kh").stdout == "ok\n"
    with host_for("kh") as h:
        assert h.run("echo ok").text == "ok\n"
    # trust writes to the file the config names, and keeps what was there
    custom.write_text(
        "# my hosts\n@cert-authority *.corp ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"
    )
    assert orch("hosts", "trust", "kh", "--yes").exit_code == 0
    lines = custom.read_text().splitlines()
    assert lines[:2] == [
        "# my hosts",
        "@cert-authority *.corp ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",
    ]
    assert lines[2].split()[:3] == sshd.known_hosts_line().split()
    assert not (isolated_home / ".ssh" / "known_hosts").exists()


def test_strict_host_key_checking_no_only_when_the_config_says_so(
    project, sshd, isolated_home, tmp_path, capfd
):
    custom = tmp_path / "kh"
    write_config(
        isolated_home,
        "Host strict\n"
        + block(sshd, f"  UserKnownHostsFile {custom}\n")
        + "Host lax\n"
        + block(sshd, f"  UserKnownHostsFile {custom}\n  StrictHostKeyChecking no\n"),
    )
    with pytest.raises(HostKeyError, match="not in known_hosts"):  # default: refused
        host_for("strict").run("true")
    assert not custom.exists()
    with host_for("lax") as h:  # the user asked for it: accepted, recorded, and said so
        assert h.run("echo ok").text == "ok\n"
    err = capfd.readouterr().err
    assert (
        "lax: StrictHostKeyChecking no in the ssh configuration: accepted the new host key" in err
    )
    assert custom.read_text().split()[:3] == sshd.known_hosts_line().split()
    with host_for("strict") as h:  # now known
        assert h.run("echo ok").text == "ok\n"
    custom.write_text(_other_key_line(sshd, tmp_path))
    with pytest.raises(HostKeyChanged, match="CHANGED"):  # a changed key: never accepted
        host_for("lax").run("true")


def test_lab_config_with_known_hosts_dev_null(project, sshd, isolated_home, capfd, orch):
    """`UserKnownHostsFile /dev/null` + `StrictHostKeyChecking no`: connects, says so, and
    never writes into /dev/null; trust refuses to record there."""
    extra = "  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n"
    write_config(isolated_home, "Host lab\n" + block(sshd, extra))
    with host_for("lab") as h:
        assert h.run("echo ok").text == "ok\n"
    assert "accepted the new host key" in capfd.readouterr().err
    assert Path("/dev/null").is_char_device()
    res = orch("hosts", "trust", "lab", "--yes")
    assert res.exit_code == 3 and "cannot record the key" in res.stderr
    assert Path("/dev/null").is_char_device()


PROXY = """\
import socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], "w").write("used")
def pump():
    while data := sock.recv(65536):
        sys.stdout.buffer.write(data); sys.stdout.buffer.flush()
threading.Thread(target=pump, daemon=True).start()
while data := sys.stdin.buffer.read1(65536):
    sock.sendall(data)
"""


def test_proxy_command_is_used(project, sshd, isolated_home, tmp_path):
    (tmp_path / "proxy.py").write_text(PROXY)
    marker = tmp_path / "proxy-used"
    command = f"{sys.executable} {tmp_path}/proxy.py %h %p {marker}"
    extra = f"  ProxyCommand {command}\n  UserKnownHostsFile {isolated_home}/.ssh/known_hosts\n"
    write_config(isolated_home, "Host viaproxy\n" + block(sshd, extra))
    (isolated_home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line())
    opts = ssh_config.resolve("viaproxy")
    assert opts.proxy_command == command.replace("%h %p", f"127.0.0.1 {sshd.port}")
    with host_for("viaproxy") as h:
        assert h.run("echo ok").text == "ok\n"
    assert marker.read_text() == "used"


@pytest.mark.parametrize("user_says_no", [False, True])
def test_only_the_users_own_file_can_relax_host_key_checking(tmp_path, monkeypatch, user_says_no):
    """`StrictHostKeyChecking no` from a system-wide file (here: a file that includes the
    user's and adds it, standing for /etc/ssh/ssh_config) keeps orch strict."""
    user = tmp_path / "config"
    user.write_text(
        "Host lab\n  HostName 10.0.0.9\n" + ("  StrictHostKeyChecking no\n" if user_says_no else "")
    )
    system = tmp_path / "ssh_config"
    system.write_text(f"Include {user}\nHost *\n  StrictHostKeyChecking no\n")
    monkeypatch.setattr(
        ssh_config, "_ssh_args", lambda cfg, system_too=True: [] if system_too else ["-F", str(cfg)]
    )
    real_run = subprocess.run

    def run(cmd, **kw):  # "no -F" stands for "the user's and the system's files"
        if cmd[:2] == [cmd[0], "-G"] and "-F" not in cmd:
            cmd = [cmd[0], "-G", "-F", str(system), *cmd[2:]]
        return real_run(cmd, **kw)

    monkeypatch.setattr(ssh_config.subprocess, "run", run)
    opts = ssh_config.resolve("lab", str(user))
    assert ssh_g("lab", system)["stricthostkeychecking"] == ["false"]  # ssh itself would relax
    assert opts.strict_host_key_checking == ("no" if user_says_no else "ask")
    assert opts.checks_strictly is not user_says_no
