"""`did_you_mean`: the one suggestion for a misspelt name (config keys, playbook settings,
method kinds, hosts). Standard library only."""

from __future__ import annotations

import difflib
from typing import Any


def did_you_mean(name: object, choices: Any) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
