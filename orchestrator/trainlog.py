"""Progress of a `command:` job, read from its log.txt: the `orch-progress` line protocol
(`gpu_worker.contract.schema.progress_line`) and Hugging Face Trainer's own lines.

On the host, `extract_script(log)` keeps the last line of each kind from the log's tail, tagged:
`P orch-progress step=120 total=500 loss=0.41`, `H {'loss': '0.41', 'epoch': '0.5'}` (the
Trainer's log dict), `T 120/500` (the last tqdm counter). The status script runs it for live
runs that write no progress.json, and the job wrapper once when the command ends (the run's
`progress.txt`), so a host's status cost does not grow with its finished runs. `parse` turns the
tagged lines into a `LogProgress`: step and total from the protocol, else from tqdm; metrics from
the protocol, else from the Trainer's dict.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

from gpu_worker.contract.schema import PROGRESS_WORD, parse_progress_line

from .shell import Quoted, quote, trusted

TAIL_BYTES = 65536
PROGRESS_TXT = "progress.txt"
_AWK = (
    f"/^{PROGRESS_WORD} / {{p=$0}} "
    "/^\\{.*loss/ {h=$0} "
    "match($0, /[0-9]+\\/[0-9]+ \\[/) {t=substr($0, RSTART, RLENGTH-2)} "
    'END {if (p != "") print "P " p; if (h != "") print "H " h; if (t != "") print "T " t}'
)


def extract_script(log: str) -> Quoted:
    """Shell words printing the tagged progress lines of the log at shell expression `log`
    (such as `"$D/log.txt"`; orch's own text)."""
    return trusted(f"tail -c {TAIL_BYTES} {log} 2>/dev/null | tr '\\r' '\\n' | awk {quote(_AWK)}")


@dataclass(frozen=True)
class LogProgress:
    """What the log says: step of total (None: not said) and the last metrics."""

    step: int | None = None
    total: int | None = None
    metrics: dict[str, float | str] = field(default_factory=dict)


def _trainer_metrics(text: str) -> dict[str, float | str]:
    """The Trainer's `{'loss': '0.41', ...}` line (values are numbers or number strings)."""
    try:
        doc = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, float | str] = {}
    for key, value in doc.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if isinstance(key, str) and math.isfinite(number):
            out[key] = number
    return out


def parse(tagged: dict[str, str]) -> LogProgress | None:
    """A `LogProgress` from the tagged lines (`{"P": ..., "H": ..., "T": ...}`), or None when
    the log said nothing about progress."""
    step = total = None
    metrics: dict[str, float | str] = {}
    said = parse_progress_line(tagged.get("P", "")) or {}
    if isinstance(said.get("step"), int):
        step = int(said.pop("step"))
    if isinstance(said.get("total"), int):
        total = int(said.pop("total"))
    metrics = dict(said)
    done, _, count = tagged.get("T", "").partition("/")
    if step is None and done.isdigit() and count.isdigit():
        step, total = int(done), int(count)
    if not metrics and "H" in tagged:
        metrics = _trainer_metrics(tagged["H"])
    if step is None and not metrics:
        return None
    return LogProgress(step, total, metrics)


def eta(progress: LogProgress, elapsed_s: float | None) -> float | None:
    """Seconds left at the run's average pace so far (start-up included, so approximate)."""
    if not progress.step or progress.total is None or elapsed_s is None:
        return None
    elapsed_s = max(elapsed_s, 1.0)  # the host's clock is read in whole seconds
    return max(0.0, (progress.total - progress.step) * elapsed_s / progress.step)
