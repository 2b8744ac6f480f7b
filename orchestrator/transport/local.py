"""The built-in `local` host: the same calls as an SSH host, run with bash on this machine."""

from __future__ import annotations

import os
import signal
import subprocess

from .base import Host, Process


class LocalHost(Host):
    """The built-in `local` host (no SSH): each command is `bash -c` in its own session."""

    def _start(self, command: str) -> Process:
        return _Subprocess(command)


class _Subprocess(Process):
    """A `bash -c` child in its own process group (killed as a group)."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    def read(self, size: int) -> bytes:
        return self.proc.stdout.read1(size)

    def read_stderr(self) -> bytes:
        return self.proc.stderr.read()

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
