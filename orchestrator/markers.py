"""The README's results markers: `replace_block(text, block)` changes only what lies between
`<!-- orch:results:start -->` and `<!-- orch:results:end -->`; without markers it appends a
"Results" section holding them. Everything outside the markers is kept byte for byte.

A marker counts only on a line of its own (up to 3 spaces of indent, as CommonMark allows) and
outside fenced code blocks, so a README that shows the markers in code, or inline, is not cut
there. A new README whose markers would not read back as exactly one pair around the new block
is refused (`MarkerError`) before anything is written. Pure functions.
"""

from __future__ import annotations

import re

START = "<!-- orch:results:start -->"
END = "<!-- orch:results:end -->"


class MarkerError(ValueError):
    """The README's markers are broken (one missing, repeated, or out of order)."""


def find_markers(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) character spans of every START and END marker that counts: alone on its
    line (indent < 4 spaces) and outside fenced code blocks. Returned as (starts, ends)."""
    starts: list[tuple[int, int]] = []
    ends: list[tuple[int, int]] = []
    fence: str | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        stripped = body.lstrip(" ")
        indent = len(body) - len(stripped)
        opener = _FENCE.match(stripped) if indent < 4 else None
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                if not stripped[len(opener.group(1)) :].strip():
                    fence = None
        elif opener and not (opener.group(1)[0] == "`" and "`" in opener.group(2)):
            fence = opener.group(1)
        elif indent < 4 and stripped.rstrip() in (START, END):
            span = (offset + indent, offset + indent + len(stripped.rstrip()))
            (starts if stripped.rstrip() == START else ends).append(span)
        offset += len(line)
    return starts, ends


_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")


def _one_pair(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    starts, ends = find_markers(text)
    if len(starts) != 1 or len(ends) != 1 or starts[0][0] > ends[0][0]:
        raise MarkerError(
            f"expected one {START} before one {END}, each on its own line outside code; "
            f"found {len(starts)} and {len(ends)}: fix them by hand"
        )
    return starts[0], ends[0]


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced by `block` (appended in a Results section if new).

    Raises MarkerError when the README's markers are broken, or when the result would not have
    exactly one marker pair around `block` (a block holding a marker or an open code fence,
    or markers appended inside an unclosed fence); nothing is written by this function.
    """
    starts, ends = find_markers(text)
    if not starts and not ends:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{sep}## Results\n\n{START}\n{block}\n{END}\n"
    else:
        (s0, s1), (e0, e1) = _one_pair(text)
        new = f"{text[:s0]}{START}\n{block}\n{END}{text[e1:]}"
    try:
        (_, n1), (n0, _) = _one_pair(new)
    except MarkerError:
        raise MarkerError(
            f"the new README would not keep one {START} ... {END} pair (an unclosed ``` "
            "fence, or a marker inside the results): fix the README by hand; nothing was written"
        ) from None
    if new[n1:n0] != f"\n{block}\n":
        raise MarkerError("the new results block would not read back intact; nothing was written")
    return new
