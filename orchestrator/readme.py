"""Pure functions: render the results tables that go between the README markers (the markers
themselves, `replace_block` and `MarkerError`, are `markers.py`). Text that comes from a results
file (host, GPU, data source...) is escaped: it can neither end a line nor open HTML or Markdown.

A `wrong script` column (share of predicted letters outside `data.script`) is shown when a
method of the run has `wrong_script_rate`; a run scored with `scoring.group_by` gets a second
table under the first, one row per (group, method) with CER/WER intervals, n and the paired
ΔCER vs the baseline within that group. A derived method (`postprocess:`) is a row of its own;
a note under the table gives its paired Δ CER against the method it post-corrects.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from gpu_worker.contract.schema import best_method, method_names

BASELINE_NAMES = ("baseline", "greedy")


@dataclass(frozen=True)
class RunTable:
    """One run's results as the README shows them."""

    run_id: str
    playbook: str
    results: dict
    plot_link: str | None = None
    label: str | None = None  # set when a playbook shows several runs: the run id
    history_link: str | None = None
    report_link: str | None = None  # the run's `orch report` page, when published with it

    @property
    def key(self) -> str:
        """The table's heading and name: the playbook, or `label` when it shows several runs."""
        return self.label or self.playbook

    @property
    def methods(self) -> list[str]:
        """Method names in results order."""
        return method_names(self.results)

    @property
    def baseline(self) -> str:
        """The method the CER change is measured against: the run's `baseline` (the worker's
        `scoring.baseline` or first method); for older results `baseline`, `greedy` or the first."""
        named = self.results.get("run", {}).get("baseline")
        if named in self.methods:
            return named
        return next((m for m in BASELINE_NAMES if m in self.results), self.methods[0])

    @property
    def best(self) -> str | None:
        """The method with the lowest corpus CER (`contract.schema.best_method`); None when
        every method failed."""
        return best_method(self.results)


def num(value: float, digits: int = 3) -> str:
    """`value` with `digits` decimals; a huge one (a broken rate) in short scientific form."""
    return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.{digits}g}"


def _fmt(value: float | None, digits: int = 3, ci: list | None = None) -> str:
    if value is None:
        return "—"
    text = num(value, digits)
    return f"{text} ({num(ci[0], digits)}–{num(ci[1], digits)})" if ci else text


def _delta(table: RunTable, m: str) -> str:
    """ΔCER vs the baseline with its paired interval and p-value; `*` when it excludes 0."""
    r, base = table.results[m], table.results[table.baseline]
    if m == table.baseline or r["cer"] is None or base["cer"] is None:
        return "—"
    vs = r.get("vs_baseline")
    return _vs(vs) if vs else f"{r['cer'] - base['cer']:+.3f}"


def _row(table: RunTable, m: str) -> str:
    r = table.results[m]
    if r["cer"] is None:
        cer = f"failed ({r['failures']} of {r['n']})"
    else:
        point = f"**{num(r['cer'])}**" if m == table.best else num(r["cer"])
        ci = r.get("cer_ci")
        cer = f"{point} ({num(ci[0])}–{num(ci[1])})" if ci else point
    failures = f" ({r['failures']} failed)" if r.get("failures") and r["cer"] is not None else ""
    s_img, rate = r["time_per_image_s"], r["images_per_s"]
    script = f" {_fmt(r.get('wrong_script_rate'))} |" if _has_script(table) else ""
    return (
        f"| {m} | {cer} | {_delta(table, m)} | {_fmt(r['wer'], ci=r.get('wer_ci'))} | "
        f"{_fmt(r['exact_match'])} | {'—' if s_img is None else num(s_img)} | "
        f"{'—' if rate is None else num(rate, 2)} | {r['n']}{failures} |{script}"
    )


def _has_script(table: RunTable) -> bool:
    """Whether the run measured `wrong_script_rate` (a `data.script` other than none)."""
    return any(table.results[m].get("wrong_script_rate") is not None for m in table.methods)


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _holm(vs: dict) -> str:
    """`, Holm 0.012` when the run compared several methods (the adjusted p differs)."""
    adjusted = vs.get("p_holm")
    return "" if adjusted is None or adjusted == vs["p_value"] else f", Holm {_p(adjusted)}"


def _vs(vs: dict | None) -> str:
    """Δ CER (interval), raw p and its Holm adjustment; `*`: significant (`summary.recommend`'s
    rule, recorded in results.json: interval excludes 0 and Holm p < 0.05)."""
    if not vs:
        return "—"
    raw = _p(vs["p_value"])
    p = f"p{raw}" if raw.startswith("<") else f"p={raw}"
    mark = " \\*" if vs["significant"] else ""
    ci = f"({vs['ci'][0]:+.3f} to {vs['ci'][1]:+.3f})"
    return f"{vs['delta_cer']:+.3f} {ci}, {p}{_holm(vs)}{mark}"


def group_table(table: RunTable) -> list[str]:
    """The per-group table (`scoring.group_by`), or no lines when the run has no groups."""
    methods = [m for m in table.methods if isinstance(table.results[m].get("groups"), dict)]
    if not methods:
        return []
    names = sorted({g for m in methods for g in table.results[m]["groups"]})
    column = (table.results.get("run", {}).get("data") or {}).get("group_by") or "group"
    lines = [
        f"| {md_text(column)} | method | CER (95% CI) | Δ CER vs baseline | WER (95% CI) | n |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for g in names:
        for m in methods:
            r = table.results[m]["groups"].get(g)
            if r is None:
                continue
            lines.append(
                f"| {md_text(g)} | {m} | {_fmt(r['cer'], ci=r.get('cer_ci'))} | "
                f"{_vs(r.get('vs_baseline'))} | {_fmt(r['wer'], ci=r.get('wer_ci'))} | {r['n']} |"
            )
    return lines


def sample_size_line(table: RunTable) -> str | None:
    """How many lines would detect each method's observed ΔCER (95% confidence, 80% power)."""
    parts, rerun = [], False
    for m in table.methods:
        vs = table.results[m].get("vs_baseline")
        if not vs:
            continue
        if vs.get("identical"):  # the same edits on every line: no n would tell them apart
            parts.append(f"{m}: identical")
            continue
        parts.append(f"{m} ≈ {vs['lines_needed']:,} (Δ {vs['lines_needed_delta']:.3f})")
        rerun = rerun or (not vs["significant"] and vs["lines_needed"] > vs["n"])
    if not parts:
        return None
    n = max(table.results[m]["n"] for m in table.methods)
    text = (
        f"Sample size: n={n} lines. Lines needed to detect the observed ΔCER vs "
        f"{table.baseline} (95% confidence, 80% power): {'; '.join(parts)}."
    )
    if rerun:
        text += " Rerun with `--set data.n_samples=N` or the full split to tell them apart."
    return text


def postcorrection_lines(table: RunTable) -> list[str]:
    """Per derived method (`postprocess:`, results carry `vs_source`), its paired Δ CER against
    the method it post-corrects, Holm-adjusted over the derived methods."""
    out = []
    for m in table.methods:
        vs = table.results[m].get("vs_source")
        if vs:
            source = md_text(vs.get("method", ""))
            out.append(f"Post-correction {md_text(m)} vs {source}: Δ CER {_vs(vs)}.")
    return out


def _notes(table: RunTable) -> list[str]:
    """The lines under the table: significance, sample size, the recommendation."""
    run = table.results.get("run", {})
    notes = []
    if any(table.results[m].get("vs_baseline") for m in table.methods):
        boot = run.get("bootstrap") or {}
        notes.append(
            "CER and WER with 95% bootstrap intervals over lines; Δ CER is paired on the same "
            f"lines ({boot.get('resamples', 1000)} resamples); Holm: the p-value adjusted for "
            "comparing several methods with the baseline; \\* marks an interval that excludes 0 "
            "with Holm p < 0.05."
        )
    notes += postcorrection_lines(table)
    size = sample_size_line(table)
    if size:
        notes.append(size)
    statement = (run.get("recommendation") or {}).get("statement")
    if statement:
        notes.append(f"Recommendation: {statement}.")
    return notes


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&~!#])")


def md_text(value: object, limit: int = 200) -> str:
    """`value` as one line of plain Markdown text: no line breaks, punctuation escaped."""
    flat = _CONTROL.sub(" ", str(value)).strip()[:limit]
    return _MARKDOWN.sub(r"\\\1", flat)


def md_code(value: object, limit: int = 200) -> str:
    """`value` as an inline code span on one line (backticks and line breaks removed)."""
    flat = _CONTROL.sub(" ", str(value)).replace("`", "'").strip()[:limit]
    return f"`{flat or ' '}`"


def render_run(table: RunTable) -> str:
    """A Markdown table (one row per method), notes on intervals and sample size, provenance."""
    script = _has_script(table)
    lines = [
        f"### {table.key}",
        "",
        "| method | CER (95% CI) | Δ CER vs baseline | WER (95% CI) | exact match | s/image "
        "| images/s | n |" + (" wrong script |" if script else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if script else ""),
    ]
    lines += [_row(table, m) for m in table.methods]
    groups = group_table(table)
    if groups:
        lines += ["", *groups]
    notes = _notes(table)
    if notes:
        lines += ["", *notes]
    lines += ["", " · ".join(_facts(table))]
    if table.plot_link:
        lines += ["", f"![CER against seconds per image]({table.plot_link})"]
    if table.history_link:
        lines += ["", f"![CER of each run of {table.playbook} over time]({table.history_link})"]
    if table.report_link:
        lines += ["", f"Every line with each method's errors marked: [report]({table.report_link})"]
    return "\n".join(lines)


def _facts(table: RunTable) -> list[str]:
    """The provenance line's parts; every value from the results file is escaped."""
    run = table.results.get("run", {})
    when = run.get("ended_at") or run.get("started_at")
    ok_time = isinstance(when, (int, float)) and 0 < when < 1e11
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)) if ok_time else "date unknown"
    code = run.get("code") if isinstance(run.get("code"), dict) else {}
    commit = str(code.get("commit") or "unknown")[:10] + (" (dirty)" if code.get("dirty") else "")
    gpu = run.get("gpu") or f"{run.get('device', 'cpu')} (no GPU)"
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    revision = f", revision {md_code(data['revision'])}" if data.get("revision") else ""
    paths = [
        f"{md_text(m)} {md_text(table.results[m]['lora_path'])}"
        for m in method_names(table.results)
        if isinstance(table.results[m], dict) and table.results[m].get("lora_path")
    ]
    return [
        f"run {md_code(table.run_id)}",
        date,
        f"host {md_text(run.get('host', '?'))}, {md_text(gpu)}",
        f"code {md_code(commit)}",
        _model_fact(run),
        f"data {md_code(data.get('source', '?'))} ({md_text(data.get('split', '?'))}, "
        f"n={md_text(data.get('n_samples', '?'))}, seed {md_text(data.get('seed', '?'))}"
        f"{revision})",
    ] + ([f"LoRA path: {', '.join(paths)}"] if paths else [])


def adapters_of(run: dict) -> list[dict]:
    """`[{name, sha256}]` of a run's adapters: `run.model.adapters` (the worker's names and
    content hashes), else the last path component of each of `run.model.checkpoints`."""
    model = run.get("model") if isinstance(run.get("model"), dict) else {}
    listed = model.get("adapters")
    if isinstance(listed, list) and all(isinstance(a, dict) for a in listed):
        return [{"name": str(a.get("name") or "?"), "sha256": a.get("sha256")} for a in listed]
    paths = model.get("checkpoints") if isinstance(model.get("checkpoints"), list) else []
    return [{"name": str(p).rstrip("/").rsplit("/", 1)[-1], "sha256": None} for p in paths]


def public_name(value: object) -> str:
    """A model or dataset as it may be published: a Hub id as it is, a local path (`/`, `.`,
    `~`) by its last component, so no host path is ever shown."""
    text = str(value or "?").rstrip("/") or "?"
    return text.rsplit("/", 1)[-1] if text.startswith(("/", ".", "~")) else text


def _model_fact(run: dict) -> str:
    """`model `base` + adapters `a` (sha 1a2b3c4d), …` (`hash unknown` when not recorded)."""
    model = run.get("model") if isinstance(run.get("model"), dict) else {}
    base = public_name(model.get("base"))
    adapters = [
        f"{md_code(a['name'])} ({'sha ' + str(a['sha256'])[:8] if a['sha256'] else 'hash unknown'})"
        for a in adapters_of(run)
    ]
    return f"model {md_code(base)}" + (f" + adapters {', '.join(adapters)}" if adapters else "")


def render_block(tables: list[RunTable]) -> str:
    """Everything that goes between the markers."""
    return "\n\n".join(render_run(t) for t in tables)


def commit_message(tables: list[RunTable]) -> str:
    """`results: <run> — best CER 0.301 (combined), baseline 0.420` (runs joined by `; `)."""
    parts = []
    for t in tables:
        base = t.results[t.baseline]["cer"]
        base_text = "failed" if base is None else f"{base:.3f}"
        if t.best is None:
            parts.append(f"{t.run_id} — every method failed")
            continue
        best = t.results[t.best]["cer"]
        parts.append(f"{t.run_id} — best CER {best:.3f} ({t.best}), {t.baseline} {base_text}")
    return "results: " + "; ".join(parts)
