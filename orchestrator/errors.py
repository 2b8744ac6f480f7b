"""One exception family for orch, and the one place that maps an exception to an exit code.

Exit codes: 0 success, 1 the job or check failed, 2 usage or configuration error,
3 host unreachable (connection refused, timed out, lost, or its host key not trusted).
`exit_code_for` and `message_for` are what the CLI's single handler uses; nothing else decides
an exit code from an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport.base import CommandResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


def brief(command: str, limit: int = 80) -> str:
    """A command (often a whole script) as one short line for an error message."""
    lines = [line.strip() for line in command.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(lines) > 1 or len(first) > limit:
        return first[: limit - 3] + "..."
    return first


class OrchError(Exception):
    """Base of every error orch reports to the user; `exit_code` says how the CLI exits."""

    exit_code = EXIT_FAILED


class ConfigError(OrchError):
    """orch.yaml, a playbook or a command-line value is invalid; the message names the field."""

    exit_code = EXIT_USAGE


class UsageError(ConfigError):
    """Command-line options that do not go together (exit 2, as click's own usage errors)."""


class HostUnreachable(OrchError):
    """The host did not answer, refused us, or the link died during a command."""

    exit_code = EXIT_UNREACHABLE


class HostKeyError(HostUnreachable):
    """The host's key is unknown or differs from known_hosts; we refuse to talk to it."""


class HostKeyChanged(HostKeyError):
    """known_hosts holds another key for the host: reinstalled, or someone in the middle."""


class HostKeyRevoked(HostKeyError):
    """The host offered a key that a known_hosts file marks @revoked."""


class RemoteCommandError(OrchError):
    """A command ran on the host and exited non-zero; `result` is its `CommandResult` (as
    invoke's `UnexpectedExit` carries its `Result`)."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        stderr = result.stderr.decode("utf-8", "replace")
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        command = result.command
        short = brief(command, 120)
        super().__init__(
            f"{result.host}: command failed with exit code {result.exit_code}: {short}"
            + (f" -- {tail}" if tail else "")
        )

    @property
    def host(self) -> str:
        """The host's name."""
        return self.result.host

    @property
    def command(self) -> str:
        """The command as sent."""
        return self.result.command

    @property
    def remote_exit_code(self) -> int:
        """The command's exit status on the host."""
        return self.result.exit_code

    @property
    def stderr(self) -> str:
        """What the command wrote to stderr, decoded."""
        return self.result.stderr.decode("utf-8", "replace")


class JobNotFound(OrchError):
    """No run record matches the run id the user gave."""

    exit_code = EXIT_USAGE


class PublishError(OrchError):
    """Publishing results (README, git, Hub) could not be completed."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code the CLI uses for `exc` (see the module docstring)."""
    if isinstance(exc, OrchError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def message_for(exc: BaseException) -> str:
    """The one line shown on stderr for `exc`."""
    if isinstance(exc, KeyboardInterrupt):
        return "orch: interrupted"
    return f"orch: error: {exc}"
