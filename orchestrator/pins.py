"""Which runs the README's headline tables show: per playbook, the run publish pinned.

The pins live in `results/plots/published.json` (`{"playbook": ["run id", ...]}`), committed
beside the plots, so every clone agrees. A plain `orch publish` keeps each playbook's pinned run
and replaces it only by the newest fetched run when that one scored at least as many lines (`n`),
or with `replace`; a smaller newer run is kept out with a note saying so. A playbook not yet
pinned starts from what that rule gives over its fetched runs, oldest first. Runs named on the
command line become their playbook's pins (several runs of one playbook each get their own
heading and plot); the other playbooks keep theirs. A pinned run whose folder is gone falls back
to the newest run, with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PublishError

STATE_FILE = "published.json"


@dataclass(frozen=True)
class Headline:
    """The runs to show, grouped by playbook (sorted), and why a newer run was not taken."""

    pins: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The state file's text (stable: sorted keys, one trailing newline)."""
        return json.dumps(self.pins, indent=1, sort_keys=True) + "\n"


def run_size(results: dict) -> int:
    """The lines a run scored: `run.data.n_samples`, else its methods' largest `n`."""
    data = (results.get("run") or {}).get("data") or {}
    n = data.get("n_samples")
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    return max(
        (v["n"] for k, v in results.items() if k != "run" and isinstance(v, dict)), default=0
    )


def load_pins(path: Path) -> dict[str, list[str]]:
    """The pinned runs in `path` (`{}` when there is none); a broken file is an error."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{path}: unreadable ({exc}); fix or delete it") from None
    ok = isinstance(doc, dict) and all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in doc.values()
    )
    if not ok:
        raise PublishError(f"{path}: expected {{playbook: [run id, ...]}}; fix or delete it")
    return doc


def _by_the_rule(runs) -> list[str]:
    """The run the pin rule would have kept over `runs` (oldest first): each run replaces the
    one before when it scored at least as many lines. For playbooks never published yet."""
    kept = None
    for r in runs:
        if kept is None or run_size(r.results) >= run_size(kept.results):
            kept = r
    return [kept.run_id] if kept else []


def choose(runs, pinned: dict[str, list[str]], named: list, replace: bool) -> Headline:
    """The new pins from the fetched `runs` (oldest first, with `run_id`, `playbook`,
    `results`), the old `pinned`, the runs `named` on the command line and `--replace`."""
    by_id = {r.run_id: r for r in runs}
    newest = {r.playbook: r for r in runs}
    pins: dict[str, list[str]] = {}
    notes: list[str] = []
    for pb, ids in pinned.items():
        if pb not in newest:
            continue  # no fetched run of it any more: its table goes
        kept = [i for i in ids if i in by_id]
        if len(kept) < len(ids):
            gone = ", ".join(i for i in ids if i not in by_id)
            notes.append(f"{pb}: pinned run {gone} is no longer under results/; unpinned")
        pins[pb] = kept
    if named:
        for r in named:
            pins[r.playbook] = []
        for r in named:
            pins[r.playbook].append(r.run_id)
        return Headline(dict(sorted(pins.items())), notes)
    for pb, new in newest.items():
        old = pins.get(pb) or _by_the_rule([r for r in runs if r.playbook == pb][:-1])
        if not old or new.run_id in old or replace:
            pins[pb] = old if new.run_id in old and not replace else [new.run_id]
            continue
        n_old = max(run_size(by_id[i].results) for i in old)
        n_new = run_size(new.results)
        if n_new >= n_old:
            pins[pb] = [new.run_id]
        else:
            pins[pb] = old
            notes.append(
                f"{pb}: kept the published run {', '.join(old)} (n={n_old}); newer "
                f"{new.run_id} scored fewer lines (n={n_new}): name it or pass --replace"
            )
    return Headline(dict(sorted(pins.items())), notes)
