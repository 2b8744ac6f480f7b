"""One-line errors about hosts, against real sockets and the loopback sshd: a port that accepts
TCP but does not speak SSH yet, a remote command past its timeout and an ~/.ssh/config alias
listed in orch.yaml without repeating `host:`."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from orchestrator.config import load_config
from orchestrator.errors import HostUnreachable, exit_code_for
from orchestrator.transport import open_host
from tests.helpers import orch_cmd


class NotSSH:
    """A loopback TCP server that accepts and then sends nothing (an sshd still starting), or
    sends a line that is not an SSH banner (another service on the port)."""

    def __init__(self, banner: bytes) -> None:
        self.banner = banner
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            if self.banner:
                conn.sendall(self.banner)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("banner", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_host_not_speaking_ssh_is_one_line_exit_3(project, banner):
    server = NotSSH(banner)
    try:
        (project / "orch.yaml").write_text(
            f"hosts:\n  rented: {{host: 127.0.0.1, port: {server.port}, timeout: 1}}\n"
        )
        commands = [["status", "--host", "rented"]]
        commands += [["doctor", "--host", "rented"]] if banner else []
        for command in commands:
            res = subprocess.run(orch_cmd(*command), capture_output=True, text=True, timeout=60)
            assert res.returncode == 3, res.stderr
            lines = res.stderr.splitlines()
            assert len(lines) == 1, res.stderr  # no paramiko traceback
            assert "rented: unreachable" in lines[0] and "does not speak SSH" in lines[0]
        assert server.accepted >= len(commands)
    finally:
        server.close()


def test_remote_command_timeout_names_host_and_command(gpu):
    with open_host(load_config().host("gpu")) as host:
        with pytest.raises(HostUnreachable) as caught:
            host.run("sleep 3; echo late", timeout=0.5)
    assert str(caught.value) == "gpu: no answer within 0.5s for: sleep 3; echo late"
    assert exit_code_for(caught.value) == 3


def test_ssh_alias_in_orch_yaml_needs_no_host_field(project, box, tmp_path, orch):
    (project / "orch.yaml").write_text(f"hosts:\n  box: {{remote_dir: {tmp_path / 'r'}}}\n")
    assert load_config().host("box").hostname == "box"
    listed = orch("hosts", "list").stdout
    assert any(line.split()[:2] == ["box", "box"] for line in listed.splitlines()), listed
    res = orch("push", "--host", "box")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "code").is_dir()
