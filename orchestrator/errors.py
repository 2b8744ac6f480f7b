"""One exception family for orch; `cli.py` turns each into a one-line message and an exit code.

Exit codes: 0 success, 1 the job or check failed, 2 usage or configuration error,
3 host unreachable (connection refused, timed out, lost, or its host key not trusted).
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class OrchError(Exception):
    """Base of every error orch reports to the user; `exit_code` says how the CLI exits."""

    exit_code = EXIT_FAILED


class ConfigError(OrchError):
    """orch.yaml, a playbook or a command-line value is invalid; the message names the field."""

    exit_code = EXIT_USAGE


class HostUnreachable(OrchError):
    """The host did not answer, refused us, or the link died during a command."""

    exit_code = EXIT_UNREACHABLE


class HostKeyError(HostUnreachable):
    """The host's key is unknown or differs from known_hosts; we refuse to talk to it."""


class RemoteCommandError(OrchError):
    """A command ran on the host and exited non-zero."""

    def __init__(self, host: str, command: str, exit_code: int, stderr: str) -> None:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        short = command if len(command) <= 120 else command[:117] + "..."
        super().__init__(
            f"{host}: command failed with exit code {exit_code}: {short}"
            + (f" -- {tail}" if tail else "")
        )
        self.host = host
        self.command = command
        self.remote_exit_code = exit_code
        self.stderr = stderr


class JobNotFound(OrchError):
    """No run record matches the run id the user gave."""

    exit_code = EXIT_USAGE


class PublishError(OrchError):
    """Publishing results (README, git, Hub) could not be completed."""
