"""known_hosts as OpenSSH writes it, against the real sshd: marker lines do not stop orch,
@revoked keys are refused, hashed names work, `orch hosts trust` keeps every other line."""

import paramiko
import pytest

from orchestrator.config import load_config
from orchestrator.errors import HostKeyRevoked
from orchestrator.transport import hostkeys, open_host
from tests.sshd_server import keygen

CA = (
    "@cert-authority *.corp.example ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
)
ODD = [
    "# a comment\n",
    "\n",
    CA,
    "other.example ssh-foo AAAAB3NzaC1yc2E=\n",  # a key type paramiko does not know
    "garbage line\n",
    "@unknown-marker x ssh-ed25519 AAAA\n",
]


def host_for(name):
    return open_host(load_config().host(name))


def known(home):
    return home / ".ssh" / "known_hosts"


def server_entry(sshd):
    name, kind, blob = sshd.known_hosts_line().split()
    return name, kind, blob


def test_marker_and_odd_lines_do_not_stop_orch(project, sshd, isolated_home):
    sshd.install_client(isolated_home, "box", trust=False)
    known(isolated_home).write_text("".join(ODD) + sshd.known_hosts_line())
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"


def test_hashed_host_names_are_matched(project, sshd, isolated_home):
    sshd.install_client(isolated_home, "box", trust=False)
    name, kind, blob = server_entry(sshd)
    hashed = paramiko.HostKeys.hash_host(name)
    assert hostkeys.matches(hashed, name) and not hostkeys.matches(hashed, "other")
    known(isolated_home).write_text(CA + f"{hashed} {kind} {blob}\n")
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"


@pytest.mark.parametrize("also_listed", [True, False])
def test_revoked_key_is_refused(project, sshd, isolated_home, orch, also_listed):
    sshd.install_client(isolated_home, "box", trust=False)
    name, kind, blob = server_entry(sshd)
    lines = [f"@revoked * {kind} {blob}\n"]
    if also_listed:  # listed as trusted too: @revoked wins, as in OpenSSH
        lines.append(sshd.known_hosts_line())
    known(isolated_home).write_text("".join(lines))
    with pytest.raises(HostKeyRevoked, match="REVOKED"):
        host_for("box").run("true")
    res = orch("push", "--host", "box", "--dry-run")
    assert res.exit_code == 3 and "is REVOKED in" in res.stderr
    res = orch("hosts", "trust", "box", "--yes", "--replace")  # trust cannot undo a revocation
    assert res.exit_code == 3 and "REVOKED" in res.stderr
    assert known(isolated_home).read_text() == "".join(lines)


def test_revoked_old_key_with_a_new_one_listed_connects(project, sshd, isolated_home, tmp_path):
    sshd.install_client(isolated_home, "box", trust=False)
    keygen(tmp_path / "old")
    kind, blob = (tmp_path / "old.pub").read_text().split()[:2]
    known(isolated_home).write_text(f"@revoked * {kind} {blob}\n" + sshd.known_hosts_line())
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"


def test_trust_keeps_comments_markers_and_other_hosts(project, sshd, isolated_home, orch, tmp_path):
    sshd.install_client(isolated_home, "box", trust=False)
    name, _, _ = server_entry(sshd)
    keygen(tmp_path / "old")
    kind, blob = (tmp_path / "old.pub").read_text().split()[:2]
    others = "".join(ODD) + "gitlab.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"
    stale = [  # the host's old key, hashed, and in a line naming another host too
        f"{paramiko.HostKeys.hash_host(name)} {kind} {blob}\n",
        f"keep.example,{name} {kind} {blob}\n",
    ]
    known(isolated_home).write_text(others + "".join(stale))
    res = orch("hosts", "trust", "box", "--yes")
    assert res.exit_code == 3 and "CHANGED" in res.stderr  # without --replace: refused
    res = orch("hosts", "trust", "box", "--yes", "--replace")
    assert res.exit_code == 0, res.output
    assert known(isolated_home).read_text() == (
        others + f"keep.example {kind} {blob}\n" + sshd.known_hosts_line()
    )
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"
