"""`orch results` rows with what tells runs apart: each run's `--set` overrides and each method's
cost per 1,000 lines, filtered by playbook, method and start date.

Contract:
- Rows come from `publish.comparison_rows` (every fetched run, oldest first) and gain
  `overrides` (the run's `--set` assignments) and `hourly_rate`, read from the fetched run.json
  (`results/<id>/run.json`), else from the local run record; and `cost_per_1k_lines`: the
  results' own figure (`run.cost_per_1k_lines`, written by the worker), else the steady-state
  `time_per_image_s` x `hourly_rate` (`contract.schema.cost_per_1k_lines`); None when unknown.
- `--since` takes a UTC date or time (`2026-11-24`, `2026-11-24T10:30`) or an age (`3d`, `12h`,
  `90m`); anything else is a usage error naming the option.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from dataclasses import dataclass

from gpu_worker.contract.schema import SchemaError, cost_per_1k_lines, loads_bounded

from .config import Config
from .errors import ConfigError
from .fetch import results_dir
from .records import load_records

AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm])$")
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Filters:
    """Which rows `orch results` keeps (None: all)."""

    playbook: str | None = None
    method: str | None = None
    since: float | None = None  # unix seconds

    def keep(self, row: dict) -> bool:
        """Whether `row` passes every filter."""
        return (
            (self.playbook is None or row["playbook"] == self.playbook)
            and (self.method is None or row["method"] == self.method)
            and (self.since is None or row["started_at"] >= self.since)
        )


def parse_since(value: str, now: float | None = None) -> float:
    """`--since` as unix seconds (see the module docstring)."""
    text = value.strip()
    if m := AGE.match(text):
        unit = {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
        return (time.time() if now is None else now) - float(m.group(1)) * unit
    for fmt in DATE_FORMATS:
        try:
            return float(timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise ConfigError(
        f"--since '{value}': expected a UTC date or time (2026-11-24, 2026-11-24T10:30) "
        "or an age (3d, 12h, 90m)"
    )


def _run_facts(config: Config) -> dict[str, dict]:
    """run id -> the fetched run.json (overrides, hourly_rate), else its local record's."""
    facts = {
        r.run_id: {"overrides": r.overrides, "hourly_rate": r.hourly_rate}
        for r in load_records(config)
    }
    for path in results_dir(config).glob("*/run.json"):
        try:
            doc = loads_bounded(path.read_bytes())
        except (OSError, SchemaError):
            continue
        if isinstance(doc, dict):
            mine = facts.setdefault(path.parent.name, {})
            for key in ("overrides", "hourly_rate"):
                if doc.get(key) is not None:
                    mine[key] = doc[key]
    return facts


def _rate(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def add_facts(config: Config, rows: list[dict]) -> list[dict]:
    """`rows` with `overrides`, `hourly_rate` and `cost_per_1k_lines` (see the module doc)."""
    facts = _run_facts(config)
    for row in rows:
        mine = facts.get(row["run_id"], {})
        overrides = mine.get("overrides")
        row["overrides"] = [str(x) for x in overrides] if isinstance(overrides, list) else []
        row["hourly_rate"] = _rate(mine.get("hourly_rate"))
        run_costs = row.pop("run_costs", None)  # the results' own figures (from the host)
        own = _rate(run_costs.get(row["method"])) if isinstance(run_costs, dict) else None
        row["cost_per_1k_lines"] = (
            own
            if own is not None
            else cost_per_1k_lines(row["time_per_image_s"], row["hourly_rate"])
        )
    return rows


def results_rows(config: Config, filters: Filters = Filters()):
    """`publish.comparison_rows` filtered, with overrides and costs (a `publish.Comparison`)."""
    from .publish import Comparison, comparison_rows

    comparison = comparison_rows(config)
    kept = [r for r in comparison.rows if filters.keep(r)]
    return Comparison(add_facts(config, kept), comparison.warnings)
