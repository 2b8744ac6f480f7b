"""Names that a host, a playbook or a results file supplies and that orch turns into a file name
or Markdown: playbook names, method names. Checked against one safe pattern, so none of them can
name a path outside its folder (`../x`, `/tmp/x`) or carry Markdown or HTML (newlines, `<!--`,
`|`, backticks) into the README.
"""

from __future__ import annotations

import re

from .errors import ConfigError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
SAFE_HINT = "use letters, digits and _ . + - (starting with a letter or digit), at most 100"


def is_safe_name(value: object) -> bool:
    """True when `value` is a string that is safe as a file name and as Markdown text."""
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None and ".." not in value


def check_name(value: object, where: str, error: type[Exception] = ConfigError) -> str:
    """`value` if it is a safe name, else raise `error` naming `where` (e.g. `x.yaml: name`)."""
    if not is_safe_name(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise error(f"{where}: {shown} is not a safe name; {SAFE_HINT}")
    return value
