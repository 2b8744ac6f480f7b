"""The one way to put values and paths into a remote shell command.

Text that is safe to paste into a shell command line has its own type, `Quoted`, and only the
functions here make one: `quote` (one word, every character literal: globs, `$(...)`, `;` and
quotes included), `path` (the same, keeping a leading `~/` expandable), `remote` (a path under a
host's remote_dir), `join` (several words), `nest` (a whole script as one word, to run or store
it) and `trusted` (shell text written in this code base, such as `"$D"/playbook.yaml`, never a
value from outside). A raw `str` is never mistaken for quoted text: `quote` of a `Quoted` is an
error instead of a second, wrong layer of quoting.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


class Quoted(str):
    """Shell text whose every value is already quoted; make one only with this module."""

    __slots__ = ()


def quote(value: str | int | float) -> Quoted:
    """One shell word that means exactly `value` (no expansion of any kind)."""
    if isinstance(value, Quoted):
        raise TypeError(f"already quoted: {value!r}")
    return Quoted(shlex.quote(str(value)))


def path(value: str) -> Quoted:
    """A remote path as one word; a leading `~` or `~/` stays the remote user's home."""
    if isinstance(value, Quoted):
        raise TypeError(f"already quoted: {value!r}")
    if value == "~":
        return Quoted('"$HOME"')
    if value.startswith("~/"):
        return Quoted('"$HOME"/' + shlex.quote(value[2:]))
    return quote(value)


def remote(remote_dir: str, *parts: str) -> Quoted:
    """`<remote_dir>/<parts...>` as one quoted word."""
    return path("/".join([remote_dir.rstrip("/"), *parts]))


def join(words: Iterable[str | Quoted]) -> Quoted:
    """Space-separated words; raw ones are quoted, already quoted ones are kept as they are."""
    return Quoted(" ".join(w if isinstance(w, Quoted) else quote(w) for w in words))


def nest(script: Quoted) -> Quoted:
    """A whole script as one word, for a command that runs or stores it (`tmux new-session`,
    `printf '%s' ... > file`): the one place quoted text is quoted again, on purpose."""
    if not isinstance(script, Quoted):
        raise TypeError("nest() takes a script built with this module")
    return Quoted(shlex.quote(str(script)))


def trusted(text: str) -> Quoted:
    """Shell text written in orch's own code (a variable reference, an operator), marked as such.

    Never pass anything that came from a configuration file, a playbook or the command line.
    """
    return Quoted(text)
