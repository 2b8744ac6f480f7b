"""SSH and local transport against a real sshd: commands, host keys, timeouts, dead links.

Time bounds: a dead or hung host must fail within its own timeout plus MARGIN (start-up and a
loaded 2-core CI machine), and the timeouts are chosen so that timeout + MARGIN stays below
what a missing timeout would cost (the default 15 s, or the command's own 20-30 s).
"""

import threading
import time

import pytest

from orchestrator.config import load_config
from orchestrator.errors import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ConfigError,
    HostKeyChanged,
    HostKeyError,
    HostUnreachable,
    JobNotFound,
    RemoteCommandError,
    exit_code_for,
)
from orchestrator.transport import open_host
from tests.sshd_server import SSHServer, keygen

MARGIN = 8.0  # seconds of slack over a host's timeout; well below the default 15 s timeout


def host_for(name: str):
    return open_host(load_config().host(name))


def test_ssh_alias_runs_commands(project, box):
    with host_for("box") as h:
        res = h.run("echo out; echo err >&2; exit 7", check=False)
        assert (res.exit_code, res.stdout, res.stderr) == (7, b"out\n", b"err\n")
        assert h.run("wc -c", stdin=b"x" * 3_000_000).text.strip() == "3000000"
        with pytest.raises(RemoteCommandError) as err:
            h.run("echo boom >&2; exit 5")
        assert (
            str(err.value) == "box: command failed with exit code 5: echo boom >&2; exit 5 -- boom"
        )
        result = err.value.result  # the error carries the command's result
        assert (result.host, result.exit_code, result.stderr) == ("box", 5, b"boom\n")
        assert not h.run("exit 3", check=False).ok  # a result checks itself on demand...
        with pytest.raises(RemoteCommandError, match="exit code 3"):
            h.run("exit 3", check=False).check()  # ...and raises with itself inside


def test_streaming_output(project, box):
    seen = []
    with host_for("box") as h:
        h.run("for i in 1 2 3; do echo $i; sleep 0.1; done", on_stdout=seen.append)
    assert b"".join(seen) == b"1\n2\n3\n"
    assert len(seen) >= 2  # arrived in pieces, as printed


def test_unknown_host_key_refused_then_trusted(project, sshd, isolated_home, orch):
    sshd.install_client(isolated_home, "box", trust=False)
    res = orch("push", "--host", "box", "--dry-run")
    assert res.exit_code == 3
    assert "not in known_hosts" in res.stderr and "orch hosts trust box" in res.stderr
    assert not (isolated_home / ".ssh" / "known_hosts").exists()
    # without --yes and without a terminal nothing is written, and it says to pass --yes
    res = orch("hosts", "trust", "box")
    assert res.exit_code == 2 and not (isolated_home / ".ssh" / "known_hosts").exists()
    assert "`orch hosts trust box --yes`" in res.stderr and "not trusted" not in res.stderr
    assert res.stderr.count("\n") == 1
    res = orch("hosts", "trust", "box", "--yes")
    assert res.exit_code == 0, res.output
    assert "SHA256:" in res.output
    known = (isolated_home / ".ssh" / "known_hosts").read_text()
    assert known.split()[:3] == sshd.known_hosts_line().split()
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"


def test_changed_host_key_refused(project, sshd, isolated_home, tmp_path, orch):
    sshd.install_client(isolated_home, "box", trust=False)
    keygen(tmp_path / "other")
    kind, blob = (tmp_path / "other.pub").read_text().split()[:2]
    (isolated_home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    with pytest.raises(HostKeyChanged, match="CHANGED"):
        host_for("box").run("true")
    res = orch("hosts", "trust", "box", "--yes")
    assert res.exit_code == 3 and "CHANGED" in res.stderr
    assert blob in (isolated_home / ".ssh" / "known_hosts").read_text()
    res = orch("hosts", "trust", "box", "--yes", "--replace")
    assert res.exit_code == 0, res.output
    assert blob not in (isolated_home / ".ssh" / "known_hosts").read_text()
    with host_for("box") as h:
        assert h.run("echo ok").text == "ok\n"


def dead_host_config(project, server: SSHServer, isolated_home, timeout: float) -> None:
    server.install_client(isolated_home, "dead")
    (project / "orch.yaml").write_text(
        f"hosts:\n  dead:\n    host: dead\n    remote_dir: {project}/r\n    timeout: {timeout}\n"
    )


def test_stopped_host_is_unreachable_exit_3(project, tmp_path, isolated_home, orch):
    server = SSHServer(tmp_path / "s2").start()
    dead_host_config(project, server, isolated_home, 3)
    server.stop()
    start = time.monotonic()
    res = orch("push", "--host", "dead")
    assert res.exit_code == 3 and "dead: unreachable" in res.stderr
    assert time.monotonic() - start < 3 + MARGIN
    res = orch("doctor", "--host", "dead")  # not a failed check (1): the host is unreachable
    assert res.exit_code == 3 and "dead: unreachable" in res.stderr, res.output


def test_hung_host_fails_within_timeout(project, tmp_path, isolated_home, orch):
    server = SSHServer(tmp_path / "s3").start()
    dead_host_config(project, server, isolated_home, 2)
    server.pause()
    try:
        start = time.monotonic()
        res = orch("push", "--host", "dead")
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    assert res.exit_code == 3, res.output
    assert "dead: unreachable" in res.stderr
    assert elapsed < 2 + MARGIN  # its own 2 s timeout, not the default 15 s


def test_link_cut_during_command_is_unreachable_not_failure(project, tmp_path, isolated_home):
    server = SSHServer(tmp_path / "s4").start()
    dead_host_config(project, server, isolated_home, 5)
    h = host_for("dead")
    h.run("true")
    cuts: list[threading.Thread] = []
    cut_at: list[float] = []

    def cut_once_running(chunk: bytes) -> None:  # the command is running: now cut the link
        if not cuts:
            cut_at.append(time.monotonic())
            cuts.append(threading.Thread(target=server.stop))
            cuts[0].start()

    with pytest.raises(HostUnreachable):
        h.run("echo running; sleep 30", timeout=20, on_stdout=cut_once_running)
    raised_at = time.monotonic()
    assert cuts, "the link was cut during the command"
    cuts[0].join(30)
    assert raised_at - cut_at[0] < 5 + MARGIN  # the host's 5 s timeout, not the command's 20 s


def test_command_timeout_is_a_backstop(project, box):
    with host_for("box") as h:
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match="no answer within 1s"):
            h.run("sleep 20", timeout=1)
        assert time.monotonic() - start < 1 + MARGIN  # the command's 1 s, not its 20 s
        assert h.run("echo again").text == "again\n"  # reconnects


def test_proxyjump_hops_are_checked_too(project, sshd, isolated_home):
    sshd.install_client(isolated_home, "hop")
    with open(isolated_home / ".ssh" / "config", "a") as f:
        f.write(
            f"Host inner\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
            f"  IdentityFile {sshd.client_key}\n  ProxyJump hop\n"
        )
    with host_for("inner") as h:
        assert h.run("echo $SSH_CONNECTION").text.split()[0] == "127.0.0.1"
    (isolated_home / ".ssh" / "known_hosts").unlink()
    with pytest.raises(HostKeyError, match="not in known_hosts"):
        host_for("inner").run("true")


def test_local_host_same_interface(project):
    with host_for("local") as h:
        res = h.run("echo out; echo err >&2; exit 4", check=False)
        assert (res.exit_code, res.stdout, res.stderr) == (4, b"out\n", b"err\n")
        path = h.path("sub", "f.txt")
        h.write_file(path, b"data")
        assert h.read_file(path) == b"data"
        assert h.read_file(h.path("missing")) is None
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match="no answer within 0.5s"):
            h.run("sleep 30", timeout=0.5)
        assert time.monotonic() - start < 0.5 + MARGIN
        with pytest.raises(RemoteCommandError) as err:
            h.run("echo no >&2; exit 6")
        assert (err.value.result.exit_code, err.value.stderr) == (6, "no\n")


def test_config_error_in_status_is_exit_2_not_unreachable(project, isolated_home, orch):
    (isolated_home / ".ssh").mkdir(exist_ok=True)
    (isolated_home / ".ssh" / "config").write_text("Host broken\n  NoSuchOption yes\n")
    (project / "orch.yaml").write_text(
        f"hosts:\n  gpu:\n    host: broken\n    remote_dir: {project}/r\n"
    )
    res = orch("status", "--host", "gpu")
    assert res.exit_code == 2, res.output
    assert "unreachable" not in res.output + res.stderr
    assert res.stderr.startswith("orch: error: ") and "nosuchoption" in res.stderr.lower()


def test_exit_codes_are_mapped_in_one_place():
    assert exit_code_for(ConfigError("x")) == EXIT_USAGE == 2
    assert exit_code_for(JobNotFound("x")) == EXIT_USAGE
    assert exit_code_for(HostUnreachable("x")) == EXIT_UNREACHABLE == 3
    assert exit_code_for(HostKeyChanged("x")) == EXIT_UNREACHABLE
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(ValueError("x")) == EXIT_FAILED == 1
