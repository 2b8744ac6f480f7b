"""`orch results` rows with what tells runs apart: each run's `--set` overrides and each method's
cost per 1,000 lines, filtered by playbook, method and start date.

Contract:
- A row is a `ComparisonRow` (one per fetched run and method): its fields, in order, are the
  keys of `orch results --json` (`ComparisonRow.to_json`); `render_results.view_cells` draws it.
- Rows come from `comparison_rows` (every fetched run, oldest first) and gain
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
from dataclasses import dataclass, field, fields, replace

from gpu_worker.contract.schema import (
    SchemaError,
    cost_per_1k_lines,
    loads_bounded,
    method_names,
)

from .config import Config
from .errors import ConfigError
from .fetch import results_dir
from .records import load_records

AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm])$")
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")


def _pair(value) -> tuple[float, float] | None:
    """An interval `[lo, hi]` from a results file as a tuple (None when absent)."""
    return None if value is None else tuple(value)


@dataclass(frozen=True)
class ComparisonRow:
    """One method of one fetched run, as `orch results` shows it. Rates and intervals are the
    results file's; the `vs baseline` fields are None for the baseline itself (and for results
    without a paired test); `overrides`, `hourly_rate` and `cost_per_1k_lines` are filled by
    `add_facts`. `run_costs` (the results' own cost per method) is input only, never shown."""

    run_id: str
    playbook: str
    started_at: float
    method: str
    cer: float | None  # None: every line failed
    wer: float | None
    exact_match: float | None
    n: int
    failures: int
    time_per_image_s: float | None
    images_per_s: float | None
    cer_ci: tuple[float, float] | None = None
    wer_ci: tuple[float, float] | None = None
    baseline: str | None = None  # the method the paired test compared against
    delta_cer: float | None = None
    delta_ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_holm: float | None = None
    significant: bool | None = None
    lines_needed: int | None = None
    identical: bool = False  # the same edits as the baseline on every line
    wrong_script_rate: float | None = None
    lora_path: str | None = None
    overrides: tuple[str, ...] = ()
    hourly_rate: float | None = None
    cost_per_1k_lines: float | None = None
    run_costs: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_results(
        cls, run_id: str, playbook: str, started_at: float, method: str, body: dict, **extra
    ) -> ComparisonRow:
        """The row of `method` from its validated results.json entry `body`."""
        vs = body.get("vs_baseline") or {}
        return cls(
            run_id=run_id,
            playbook=playbook,
            started_at=started_at,
            method=method,
            **{k: body[k] for k in ("cer", "wer", "exact_match", "n", "failures")},
            time_per_image_s=body["time_per_image_s"],
            images_per_s=body["images_per_s"],
            cer_ci=_pair(body.get("cer_ci")),
            wer_ci=_pair(body.get("wer_ci")),
            baseline=vs.get("method"),
            delta_cer=vs.get("delta_cer"),
            delta_ci=_pair(vs.get("ci")),
            p_value=vs.get("p_value"),
            p_holm=vs.get("p_holm"),
            significant=vs.get("significant"),
            lines_needed=vs.get("lines_needed"),
            identical=vs.get("identical", False),
            wrong_script_rate=body.get("wrong_script_rate"),
            lora_path=body.get("lora_path"),
            **extra,
        )

    def to_json(self) -> dict:
        """The `orch results --json` object: every field but `run_costs`, in order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "run_costs"}


@dataclass(frozen=True)
class Comparison:
    """`orch results`: one row per (run, method), and a warning per invalid results.json."""

    rows: list[ComparisonRow]
    warnings: list[str]


def comparison_rows(config: Config) -> Comparison:
    """One row per (run, method) across every fetched run, for `orch results`: rates with their
    intervals, the paired ΔCER vs the run's baseline and the lines needed to detect it; an
    invalid results.json is left out and named in `warnings`."""
    from .publish import load_runs

    loaded = load_runs(config)
    rows = [
        ComparisonRow.from_results(
            r.run_id,
            r.playbook,
            r.started_at,
            m,
            r.results[m],
            run_costs=r.results["run"].get("cost_per_1k_lines"),
        )
        for r in loaded.runs
        for m in method_names(r.results)
    ]
    return Comparison(rows, [f"{why}; left out" for why in loaded.invalid.values()])


@dataclass(frozen=True)
class Filters:
    """Which rows `orch results` keeps (None: all)."""

    playbook: str | None = None
    method: str | None = None
    since: float | None = None  # unix seconds

    def keep(self, row: ComparisonRow) -> bool:
        """Whether `row` passes every filter."""
        return (
            (self.playbook is None or row.playbook == self.playbook)
            and (self.method is None or row.method == self.method)
            and (self.since is None or row.started_at >= self.since)
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


def _with_facts(row: ComparisonRow, mine: dict) -> ComparisonRow:
    """`row` with its run's overrides and hourly rate and its cost (see the module doc)."""
    overrides = mine.get("overrides")
    rate = _rate(mine.get("hourly_rate"))
    costs = row.run_costs  # the results' own figures (from the host)
    own = _rate(costs.get(row.method)) if isinstance(costs, dict) else None
    return replace(
        row,
        overrides=tuple(str(x) for x in overrides) if isinstance(overrides, list) else (),
        hourly_rate=rate,
        cost_per_1k_lines=own if own is not None else cost_per_1k_lines(row.time_per_image_s, rate),
        run_costs=None,
    )


def add_facts(config: Config, rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """`rows` with `overrides`, `hourly_rate` and `cost_per_1k_lines` (see the module doc)."""
    facts = _run_facts(config)
    return [_with_facts(row, facts.get(row.run_id, {})) for row in rows]


def results_rows(config: Config, filters: Filters = Filters()) -> Comparison:
    """`comparison_rows` filtered, with overrides and costs."""
    comparison = comparison_rows(config)
    kept = [r for r in comparison.rows if filters.keep(r)]
    return Comparison(add_facts(config, kept), comparison.warnings)
