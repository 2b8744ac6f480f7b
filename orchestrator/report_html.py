"""The HTML of `orch report` (see `report.py` for what goes in): one page, nothing fetched.

Escaping: every text from a results file goes either through the README's Markdown
(`readme.render_run`, whose values are already Markdown-escaped) rendered by markdown-it with raw
HTML off, or through `html.escape`; the line browser's data (predictions: untrusted) is a JSON
block with `<`, `>` and `&` escaped (`report.to_json_text`), and the script puts it in the page
with `textContent` only, never as HTML. The page's Content-Security-Policy allows inline style
and script and `data:` images, nothing else: no request leaves the page.

The script builds the line browser: a `tbody.line` per line (its reference row, then one row per
method: CER and the output with `span.sub` substituted, `ins` inserted and `del` deleted
characters), sorted by CER (worst first by default) and filtered by group and method.
"""

from __future__ import annotations

import base64
import html
import unicodedata

from gpu_worker.contract.schema import method_names

from . import plot, readme
from .publish import FetchedRun

SHOWN = 500  # lines drawn at once; the filters narrow the rest
TOP_CONFUSIONS = 5

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:78em;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25em .5em;vertical-align:top}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}
.note{color:#555}.plot{max-width:100%}
#browser td.out,#browser td.text{font-size:1.15em;line-height:1.6}
tbody.line tr.ref td{border-top:2px solid #999;background:#fafafa}
tbody.line img{max-height:64px;display:block}
span.sub{background:#ffd27a;outline:1px solid #d89b00}
ins{background:#b6f0b6;text-decoration:none;outline:1px solid #3a3}
del{background:#f7b9b9;color:#900}
td.err{color:#900}#controls label{margin-right:1.2em}
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var table = document.getElementById("browser");
  var count = document.getElementById("count");
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function fill(select, values, all) {
    var first = el("option", null, all); first.value = ""; select.appendChild(first);
    values.forEach(function (v) {
      var o = el("option", null, v); o.value = v; select.appendChild(o);
    });
  }
  var gsel = document.getElementById("group"), msel = document.getElementById("method");
  var ssel = document.getElementById("sort");
  fill(gsel, data.groups, "all groups");
  fill(msel, data.methods, "all methods");
  if (!data.groups.length) { gsel.disabled = true; }
  function cer(r) { return r.cer === null ? 1 : r.cer; }
  function worst(line, methods) {
    var w = -1;
    methods.forEach(function (m) { if (line.m[m]) { w = Math.max(w, cer(line.m[m])); } });
    return w;
  }
  function output(r) {
    var td = el("td", "out");
    if (r.err) { td.className = "out err"; td.textContent = "failed: " + r.err; return td; }
    r.seg.forEach(function (s) {
      var node;
      if (s[0] === "=") { node = document.createTextNode(s[1]); }
      else if (s[0] === "s") { node = el("span", "sub", s[1]); node.title = "reference: " + s[2]; }
      else if (s[0] === "i") { node = el("ins", null, s[1]); }
      else { node = el("del", null, s[1]); }
      td.appendChild(node);
    });
    return td;
  }
  function body(line, methods) {
    var tb = el("tbody", "line"), head = el("tr", "ref"), pic = el("td", "img");
    tb.setAttribute("data-index", String(line.i));
    head.appendChild(el("td", "idx", String(line.i)));
    head.appendChild(el("td", "group", line.group === null ? "" : line.group));
    if (line.img) {
      var im = el("img"); im.src = line.img; im.alt = "line " + line.i; pic.appendChild(im);
    }
    head.appendChild(pic);
    head.appendChild(el("td", "method", "reference"));
    head.appendChild(el("td", "cer", ""));
    head.appendChild(el("td", "text", line.ref));
    tb.appendChild(head);
    methods.forEach(function (m) {
      var r = line.m[m];
      if (!r) { return; }
      var tr = el("tr", "hyp");
      tr.setAttribute("data-method", m);
      tr.appendChild(el("td")); tr.appendChild(el("td")); tr.appendChild(el("td"));
      tr.appendChild(el("td", "method", m));
      tr.appendChild(el("td", "cer", r.cer === null ? "failed" : r.cer.toFixed(3)));
      tr.appendChild(output(r));
      tb.appendChild(tr);
    });
    return tb;
  }
  function draw() {
    var g = gsel.value, m = msel.value, order = ssel.value;
    var methods = m ? [m] : data.methods;
    var rows = data.lines.filter(function (l) {
      return (!g || l.group === g) && methods.some(function (x) { return l.m[x]; });
    });
    if (order !== "index") {
      var sign = order === "desc" ? -1 : 1;
      rows = rows.slice().sort(function (a, b) {
        return sign * (worst(a, methods) - worst(b, methods)) || a.i - b.i;
      });
    }
    var old = table.querySelectorAll("tbody.line");
    for (var k = old.length - 1; k >= 0; k--) { old[k].remove(); }
    rows.slice(0, data.shown).forEach(function (l) { table.appendChild(body(l, methods)); });
    count.textContent = "showing " + Math.min(rows.length, data.shown) + " of " + rows.length +
      " line(s)" + (rows.length > data.shown ? "; narrow the filters to see the others" : "");
  }
  [gsel, msel, ssel].forEach(function (s) { s.addEventListener("change", draw); });
  draw();
}());
"""

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def markdown_html(text: str) -> str:
    """The README's Markdown as HTML (tables on, raw HTML off: it is shown as text)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _char(text: str) -> str:
    """A confused character for the error table: ∅ for nothing, ␠ for a space, ◌ before a
    combining mark, a code point for another invisible one (ZWJ, ZWNJ)."""
    if not text:
        return "∅"
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == " ":
            out.append("␠")
        elif cat.startswith("M"):
            out.append("◌" + ch)
        elif cat.startswith(("Z", "C")):
            out.append(f"U+{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _error_rows(results: dict) -> list[tuple[list[str], dict]]:
    """(label cells, errors) of each method, then of each group and method when grouped."""
    methods = [m for m in method_names(results) if isinstance(results[m].get("errors"), dict)]
    grouped = any(isinstance(results[m].get("groups"), dict) for m in methods)
    rows = [((["all"] if grouped else []) + [m], results[m]["errors"]) for m in methods]
    for m in methods if grouped else []:
        for g, body in sorted((results[m].get("groups") or {}).items()):
            if isinstance(body, dict) and isinstance(body.get("errors"), dict):
                rows.append(([g, m], body["errors"]))
    return rows


def error_markdown(results: dict, group_by: str = "group") -> str:
    """The error classes as Markdown tables: edits by kind and class, one row per method (and
    per group and method when the run has groups), then each row's most frequent confusions;
    a sentence when the run recorded none."""
    rows = _error_rows(results)
    if not rows:
        return "This run's results.json has no error analysis (`errors`): a run made before it."
    classes = list(dict.fromkeys(c for _, e in rows for c in e["classes"]))
    label = ([group_by] if len(rows[0][0]) == 2 else []) + ["method"]
    head = [*label, "edits", "substitutions", "insertions", "deletions", *classes]
    lines = ["| " + " | ".join(map(readme.md_text, head)) + " |", "|" + "---|" * len(head)]
    pairs = ["| " + " | ".join(map(readme.md_text, [*label, "most frequent confusions"])) + " |"]
    pairs.append("|" + "---|" * (len(label) + 1))
    for cells, e in rows:
        counts = [e["substitutions"], e["insertions"], e["deletions"]]
        numbers = [sum(counts), *counts, *(e["classes"].get(c, 0) for c in classes)]
        lines.append("| " + " | ".join([*map(readme.md_text, cells), *map(str, numbers)]) + " |")
        top = [f"{_char(r)} → {_char(h)} ×{n}" for r, h, n in e["confusions"][:TOP_CONFUSIONS]]
        said = readme.md_text(";  ".join(top), limit=400) or "—"
        pairs.append("| " + " | ".join([*map(readme.md_text, cells), said]) + " |")
    note = (
        "Each edit counted once, under the first class either character belongs to; "
        f"confusions: reference → output (∅: nothing), the top {TOP_CONFUSIONS}."
    )
    return "\n".join([*lines, "", note, "", *pairs])


def _group_by(run: FetchedRun) -> str:
    return str((run.results.get("run", {}).get("data") or {}).get("group_by") or "group")


def _plot(run: FetchedRun) -> str:
    png = plot.tradeoff_png(run.results, f"{run.playbook}: {run.run_id}")
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img class="plot" src="{uri}" alt="CER against seconds per image">'


def _controls() -> str:
    return (
        '<p id="controls"><label>group <select id="group"></select></label>'
        '<label>method <select id="method"></select></label>'
        '<label>sort <select id="sort"><option value="desc">CER, worst first</option>'
        '<option value="asc">CER, best first</option><option value="index">line number</option>'
        '</select></label></p><p id="count" class="note"></p>'
        '<table id="browser"><thead><tr><th>line</th><th>group</th><th>image</th>'
        "<th>method</th><th>CER</th><th>text (differences from the reference marked)</th>"
        "</tr></thead></table>"
        "<noscript><p>The line browser needs JavaScript.</p></noscript>"
    )


def page(run: FetchedRun, lines: list[dict], notes: list[str]) -> str:
    """The whole report page for one run."""
    from .report import to_json_text

    table = readme.RunTable(run.run_id, run.playbook, run.results)
    errors = markdown_html(error_markdown(run.results, _group_by(run)))
    methods = list(dict.fromkeys(m for line in lines for m in line["m"]))
    groups = sorted({str(line["group"]) for line in lines if line["group"] is not None})
    data = {"methods": methods, "groups": groups, "lines": lines, "shown": SHOWN}
    title = html.escape(f"orch report: {run.run_id}")
    said = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes if n)
    legend = (
        '<p class="note">Marked in each output: <span class="sub">substituted</span> (hover: the '
        "reference's characters), <ins>inserted</ins>, <del>deleted</del> (reference characters "
        "the output lacks), on the texts as scored (Unicode normal form, whitespace collapsed). "
        "CER: the worker's per-line figure.</p>"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>{title}</title><style>{CSS}</style></head><body>"
        f"<h1>{title}</h1>"
        '<p><a href="#results">results</a> · <a href="#plot">plot</a> · '
        '<a href="#errors">error classes</a> · <a href="#lines">lines</a></p>'
        f'<section id="results"><h2>Results</h2>{markdown_html(readme.render_run(table))}</section>'
        f'<section id="plot"><h2>Accuracy and speed</h2>{_plot(run)}</section>'
        f'<section id="errors"><h2>Error classes</h2>{errors}</section>'
        f'<section id="lines"><h2>Lines</h2>{said}{legend}{_controls()}</section>'
        f'<script type="application/json" id="report-data">{to_json_text(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
