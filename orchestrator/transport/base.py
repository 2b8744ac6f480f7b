"""The `Host` interface, `CommandResult`, and the one run loop both hosts share.

A host implements only how to start a command (`_start`, returning a `Process`: write stdin,
read stdout and stderr, wait for the exit status, kill) and how its failures read
(`_link_error`, `_abandon`) — as fabric's `Remote` does over invoke's `Runner`. `Host.run` feeds
stdin, streams stdout, applies the timeout and raises:
- a non-zero exit raises `RemoteCommandError` (carrying the `CommandResult`) when `check`;
- no answer within the timeout raises `HostUnreachable` (exit 3), never `RemoteCommandError`.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from gpu_worker.contract.layout import EXIT_MISSING

from ..errors import HostUnreachable, OrchError, RemoteCommandError, brief
from ..shell import Quoted, remote

if TYPE_CHECKING:
    from ..config import HostConfig

CHUNK = 1 << 16
OutputCallback = Callable[[bytes], None]


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited, on which host."""

    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    host: str = ""

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """This result, or `RemoteCommandError` carrying it when the exit code is not 0."""
        if not self.ok:
            raise RemoteCommandError(self)
        return self


class Process(ABC):
    """One started command, as a host exposes it to the run loop."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """Send end-of-file on stdin."""

    @abstractmethod
    def read(self, size: int) -> bytes:
        """Up to `size` bytes of stdout as they arrive; b'' at its end (or once killed)."""

    @abstractmethod
    def read_stderr(self) -> bytes:
        """All of stderr (blocks until it ends)."""

    @abstractmethod
    def wait(self, timeout: float | None) -> int | None:
        """The exit status, or None when `timeout` seconds passed first."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the command (or drop its channel) so every read ends; safe to call twice."""


class Host(ABC):
    """A place to run commands. Use as a context manager so the connection is closed."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.name = config.name

    # -- what a host implements ------------------------------------------------------------
    @abstractmethod
    def _start(self, command: str) -> Process:
        """Start `command` in a shell on the host."""

    def _link_error(self, exc: Exception, command: str) -> BaseException:
        """What an error of the link during `command` becomes (default: itself)."""
        return exc

    def _abandon(self) -> None:  # noqa: B027 - optional hook
        """Forget a connection a failed command may have left unusable."""

    def close(self) -> None:  # noqa: B027 - optional hook; local hosts hold nothing
        """Release the connection, if any."""

    # -- the one run loop --------------------------------------------------------------------
    def run(
        self,
        command: str,
        *,
        stdin: bytes | IO[bytes] | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_stdout: OutputCallback | None = None,
    ) -> CommandResult:
        """Run a shell command. `timeout=None` means the host's timeout; `math.inf` none."""
        limit = self.config.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        proc: Process | None = None
        try:
            proc = self._start(command)
            code, out, err = _drive(proc, stdin, deadline, on_stdout)
        except OrchError:
            _kill(proc)
            raise
        except Exception as exc:  # noqa: BLE001 - classified by the host just below
            _kill(proc)
            self._abandon()
            if isinstance(exc, TimeoutError):  # socket.timeout too
                raise HostUnreachable(
                    f"{self.name}: no answer within {limit:g}s for: {brief(command)}"
                ) from None
            mapped = self._link_error(exc, command)
            if mapped is exc:
                raise
            raise mapped from None
        res = CommandResult(command, code, out, err, self.name)
        return res.check() if check else res

    # -- helpers built on run ------------------------------------------------------------------
    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def remote_dir(self) -> str:
        """The host's working folder, as written in the configuration."""
        return self.config.remote_dir

    def path(self, *parts: str) -> Quoted:
        """A path under remote_dir, shell-quoted (`shell.remote`)."""
        return remote(self.remote_dir, *parts)

    def read_file(self, path: str) -> bytes | None:
        """The bytes of a remote file (path shell-quoted by the caller), or None if absent."""
        script = f"if [ -f {path} ]; then cat {path}; else exit {EXIT_MISSING}; fi"
        res = self.run(script, check=False)
        if res.exit_code == EXIT_MISSING:
            return None
        return res.check().stdout

    def write_file(self, path: str, data: bytes) -> None:
        """Write a remote file atomically (temp name, then rename); path shell-quoted."""
        tmp = f"{path}.tmp.$$"
        self.run(f'mkdir -p "$(dirname {path})" && cat > {tmp} && mv -f {tmp} {path}', stdin=data)


def _kill(proc: Process | None) -> None:
    if proc is not None:
        proc.kill()


def _drive(
    proc: Process,
    stdin: bytes | IO[bytes] | None,
    deadline: float,
    on_stdout: OutputCallback | None,
) -> tuple[int, bytes, bytes]:
    """Feed stdin and collect stderr on threads while stdout is read here; all within
    `deadline` (TimeoutError past it). Returns (exit status, stdout, stderr)."""
    feeder = _Thread(lambda: _feed(proc, stdin))
    errs = _Thread(proc.read_stderr)
    out = _drain(proc, on_stdout, deadline)
    code = proc.wait(_remaining(deadline))
    if code is None:
        raise TimeoutError("no exit status")
    errs.join(_remaining(deadline))
    feeder.join(_remaining(deadline))
    feeder.reraise()
    return code, out, errs.value or b""


class _Thread(threading.Thread):
    """A daemon thread that keeps its function's value or exception."""

    def __init__(self, fn: Callable[[], bytes | None]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.value: bytes | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by reraise()
            self.error = exc

    def reraise(self) -> None:
        """Raise what the function raised, if anything."""
        if self.error is not None:
            raise self.error


def _feed(proc: Process, data: bytes | IO[bytes] | None) -> None:
    """Write `data` (bytes or a binary stream) to stdin, then end it; a command that exits
    without reading all of its input is not an error."""
    try:
        if isinstance(data, bytes):
            proc.write(data)
        elif data is not None:
            while chunk := data.read(CHUNK):
                proc.write(chunk)
        proc.close_stdin()
    except BrokenPipeError:
        pass
    except BaseException:  # the command would wait for the rest of its input forever
        proc.kill()
        raise


def _remaining(deadline: float) -> float | None:
    """Seconds left until `deadline`, or None (wait forever) when there is no deadline."""
    return max(0.0, deadline - time.monotonic()) if math.isfinite(deadline) else None


def _drain(proc: Process, on_stdout: OutputCallback | None, deadline: float) -> bytes:
    """Read stdout to its end, streaming chunks to `on_stdout`; kill the command at the
    deadline (its reads then end) and raise TimeoutError."""
    timer = threading.Timer(_remaining(deadline) or 0.0, proc.kill)
    timer.daemon = True
    if math.isfinite(deadline):
        timer.start()
    chunks = []
    try:
        while chunk := proc.read(CHUNK):
            if on_stdout is not None:
                on_stdout(chunk)
            else:
                chunks.append(chunk)
    finally:
        timer.cancel()
    if time.monotonic() >= deadline:
        raise TimeoutError("timed out")
    return b"".join(chunks)
