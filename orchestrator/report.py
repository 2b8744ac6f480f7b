"""`orch report`: one self-contained HTML page per fetched run, for reading its errors.

Contract:
- Input: a fetched run folder, `results/<run_id>/`, with its validated results.json
  (`publish.load_runs`) and predictions.jsonl (one object per line and method: `index`,
  `method`, `reference`, `prediction`, `cer`, and `group` / `error` when set). A named run
  without predictions.jsonl, or with a line that is not such an object, is an error naming the
  file and line; nothing is written. With no run named, the newest run of each playbook is
  reported, those without predictions (a `command:` job) left out and named.
- Output: `results/<run_id>/report.html` (`REPORT_FILE`), written atomically. It needs no network
  at view time: CSS and JS are inline, the plot and the thumbnails are `data:` URIs, and its
  Content-Security-Policy forbids every fetch. `report_html.py` assembles the page.
- The results table, its per-group table, notes and provenance are the README's own Markdown
  (`readme.render_run`), turned into HTML; the error classes are results.json's `errors` per
  method (the worker's `errors.py`); the plot is `plot.tradeoff_png`.
- The line browser shows each line's reference and every method's output with the character
  differences marked. The alignment is computed here (`diff_segments`, difflib) on the texts
  normalised as the run scored them (`run.normalize`, whitespace collapsed); the CER beside
  each output is the worker's own per-line figure. A failed line shows its error.
- Thumbnails come from a `labels.jsonl` folder on this machine: `--images DIR`, else the run's
  `data.source` when it is such a folder (relative paths: from the project root). The folder is
  used only when its labels.jsonl hash equals the run's `data.revision` (or, with none recorded,
  every reference equals its row's text); otherwise the page has no thumbnails and says why
  (an `--images` folder that cannot serve is an error, exit 2, nothing written).
Predictions are untrusted text: the page escapes all of it (see `report_html.py`).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import io
import json
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from gpu_worker.contract.fsio import atomic_write, read_jsonl

from .config import Config
from .errors import ConfigError, PublishError
from .publish import FetchedRun, load_runs

REPORT_FILE = "report.html"
THUMB_SIZE = (640, 64)  # the largest thumbnail, in pixels (width, height)
_FORMS = ("nfc", "nfd", "nfkc", "nfkd")


@dataclass(frozen=True)
class ReportResult:
    """One written report: where, how many lines and thumbnails, and what the page notes."""

    run_id: str
    path: Path
    lines: int
    methods: list[str]
    thumbnails: int
    notes: list[str] = field(default_factory=list)
    page: str = field(default="", repr=False)  # the HTML

    def to_json(self) -> dict:
        """A JSON-ready dict (`orch report --json`)."""
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "lines": self.lines,
            "methods": self.methods,
            "thumbnails": self.thumbnails,
            "notes": self.notes,
        }


def diff_segments(reference: str, prediction: str) -> list[list[str]]:
    """The prediction as segments against the reference: `["=", text]` equal, `["s", hyp, ref]`
    substituted, `["i", hyp]` inserted, `["d", ref]` deleted (difflib, no junk heuristic)."""
    out: list[list[str]] = []
    matcher = difflib.SequenceMatcher(None, reference, prediction, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        ref, hyp = reference[i1:i2], prediction[j1:j2]
        if op == "equal":
            out.append(["=", hyp])
        elif op == "replace":
            out.append(["s", hyp, ref])
        elif op == "insert":
            out.append(["i", hyp])
        else:
            out.append(["d", ref])
    return out


def normalized(text: str, form: str) -> str:
    """`text` as the run scored it: in Unicode form `form` (`none`: as is), spaces collapsed."""
    if form in _FORMS:
        text = unicodedata.normalize(form.upper(), text)
    return " ".join(text.split())


def _where(config: Config, run: FetchedRun, name: str) -> str:
    return f"{config.defaults.results_dir}/{run.run_id}/{name}"


def _checked(rows: list[dict], where: str) -> list[dict]:
    """The prediction rows, each checked for the fields the page reads."""
    for number, row in enumerate(rows, 1):
        ok = (
            isinstance(row.get("index"), int)
            and row["index"] >= 0
            and isinstance(row.get("method"), str)
            and isinstance(row.get("reference"), (str, type(None)))
            and isinstance(row.get("prediction"), (str, type(None)))
            and isinstance(row.get("cer"), (int, float, type(None)))
            and not isinstance(row.get("cer"), bool)
        )
        if not ok:
            raise PublishError(
                f"{where}: object {number}: expected index (integer ≥ 0), method, reference and "
                "prediction (text) and cer (number or null); re-fetch the run; nothing was written"
            )
    return rows


def load_predictions(config: Config, run: FetchedRun) -> list[dict]:
    """The run's predictions.jsonl rows (PublishError naming the file when missing or bad)."""
    where = _where(config, run, "predictions.jsonl")
    path = run.path / "predictions.jsonl"
    if not path.is_file():
        raise PublishError(f"{where}: missing; re-fetch the run (`orch fetch`)")
    try:
        return _checked(read_jsonl(path), where)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PublishError(f"{exc}; re-fetch the run; nothing was written") from None


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def browser_lines(rows: list[dict], form: str, images: dict[int, str]) -> list[dict]:
    """One entry per line (by index): reference, group, thumbnail and each method's output as
    diff segments with its CER (None for a failed line, shown with its error)."""
    lines: dict[int, dict] = {}
    for row in rows:
        ref = normalized(row.get("reference") or "", form)
        line = lines.setdefault(
            row["index"],
            {"i": row["index"], "ref": ref, "group": _text_or_none(row.get("group")), "m": {}},
        )
        line["img"] = images.get(row["index"])
        if "error" in row:
            line["m"][row["method"]] = {"cer": None, "err": str(row["error"])[:500], "seg": []}
            continue
        hyp = normalized(row.get("prediction") or "", form)
        line["m"][row["method"]] = {"cer": row.get("cer"), "seg": diff_segments(ref, hyp)}
    return [lines[i] for i in sorted(lines)]


def _image_folder(config: Config, run: FetchedRun, images: Path | None) -> tuple[Path | None, str]:
    """The labels.jsonl folder to take thumbnails from, or None and why not."""
    data = run.results.get("run", {}).get("data") or {}
    if images is not None:
        folder = images.expanduser()
    else:
        source = str(data.get("source") or "")
        if not source:
            return None, "the run names no data source"
        folder = Path(source).expanduser()
        folder = folder if folder.is_absolute() else config.root / folder
    if not (folder / "labels.jsonl").is_file():
        return None, f"{folder} is not a labels.jsonl folder on this machine"
    return folder, ""


def _thumbnail(path: Path) -> str | None:
    """A PNG thumbnail of one line image as a data: URI (None when it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L")
            img.thumbnail(THUMB_SIZE)
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mismatch(folder: Path, labels: list[dict], run: FetchedRun, refs: dict[int, object]) -> str:
    """Why `folder` does not hold the run's lines ("" when it does): its labels.jsonl hash is
    not the run's `data.revision`, or (none recorded) a reference differs from its row's text."""
    revision = (run.results.get("run", {}).get("data") or {}).get("revision")
    digest = hashlib.sha256((folder / "labels.jsonl").read_bytes()).hexdigest()[:16]
    if revision and revision != digest:
        return (
            f"{folder}/labels.jsonl is not the run's data (revision {digest}, the run's {revision})"
        )
    if not revision and any(
        i >= len(labels) or labels[i].get("text") != r for i, r in refs.items()
    ):
        return f"the texts in {folder}/labels.jsonl differ from the run's"
    return ""


def _read_images(folder: Path, labels: list[dict], indices) -> dict[int, str]:
    """Index -> thumbnail of each line whose image reads, never from outside `folder`."""
    root, out = folder.resolve(), {}
    for i in indices:
        name = labels[i].get("image") if i < len(labels) else None
        path = (folder / name).resolve() if isinstance(name, str) else None
        if path is not None and root in path.parents:
            uri = _thumbnail(path)
            if uri:
                out[i] = uri
    return out


def thumbnails(
    config: Config, run: FetchedRun, rows: list[dict], images: Path | None
) -> tuple[dict[int, str], str]:
    """Index -> thumbnail data URI for the run's lines, and a note saying where they came from
    or why there are none (see the module docstring). A folder given as `images` that cannot
    serve is a ConfigError."""
    refs = {r["index"]: r.get("reference") for r in rows}
    folder, why = _image_folder(config, run, images)
    labels: list[dict] = []
    if folder is not None:
        try:
            labels = read_jsonl(folder / "labels.jsonl")  # blank lines skipped, as the worker
        except (ValueError, UnicodeDecodeError) as exc:
            why = str(exc)
        else:
            why = _mismatch(folder, labels, run, refs)
    if why and images is not None:
        raise ConfigError(f"--images: {why}; nothing was written")
    if why:
        return {}, f"no thumbnails (the images are not fetched): {why}; pass --images DIR"
    out = _read_images(folder, labels, refs)
    note = f"thumbnails: {len(out)} of {len(refs)} lines, from {folder}"
    return out, note + ("" if len(out) == len(refs) else " (the others could not be read)")


def render_report(config: Config, run: FetchedRun, images: Path | None = None) -> ReportResult:
    """One fetched run's report page, made and not written (see the module docstring)."""
    from . import report_html

    rows = load_predictions(config, run)
    thumbs, note = thumbnails(config, run, rows, images)
    form = str(run.results.get("run", {}).get("normalize") or "nfc")
    lines = browser_lines(rows, form, thumbs)
    page = report_html.page(run, lines, [note])
    methods = list(dict.fromkeys(r["method"] for r in rows))
    path = run.path / REPORT_FILE
    return ReportResult(run.run_id, path, len(lines), methods, len(thumbs), [note], page)


def build_report(config: Config, run: FetchedRun, images: Path | None = None) -> ReportResult:
    """Write results/<run_id>/report.html for one fetched run."""
    made = render_report(config, run, images)
    atomic_write(made.path, made.page.encode("utf-8"), mode=0o644)
    return made


def linked_reports(
    config: Config, runs: list[FetchedRun], tables: list, build: bool, readme_path: Path
) -> tuple[list, dict[Path, bytes]]:
    """`orch publish`: the README tables (`readme.RunTable`) with a link to their run's
    report.html when it exists or, with `build` (`--report`), is made now (for a run with
    predictions); and the pages to write (results/<run_id>/ is committed with the run, so the
    link resolves in the repo)."""
    from .publish import relative_link

    by_id = {r.run_id: r for r in runs}
    pages, out = {}, []
    for table in tables:
        path = by_id[table.run_id].path / REPORT_FILE
        if build and _has_lines(by_id[table.run_id]):
            pages[path] = render_report(config, by_id[table.run_id]).page.encode("utf-8")
        link = relative_link(path, readme_path.parent) if path in pages or path.exists() else None
        out.append(replace(table, report_link=link))
    return out, pages


def _has_lines(run: FetchedRun) -> bool:
    return (run.path / "predictions.jsonl").is_file()


def write_reports(
    config: Config, run_ids: tuple[str, ...] = (), images: Path | None = None
) -> tuple[list[ReportResult], list[str]]:
    """A report for each named run, or for the newest fetched run of each playbook that has
    predictions; and the ids of the newest runs left out for having none (a `command:` job)."""
    from .publish import _select

    runs = _select(config, load_runs(config), run_ids)
    skipped = [] if run_ids else [r.run_id for r in runs if not _has_lines(r)]
    runs = [r for r in runs if r.run_id not in skipped]
    return [build_report(config, run, images) for run in runs], skipped


def to_json_text(data: object) -> str:
    """`data` as JSON that is safe inside an HTML <script> element (no `<`, `>`, `&`)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
