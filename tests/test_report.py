"""`orch report` on a real run: the worker (Tesseract) scores lines rendered from the bundled
sample, its run folder is copied as `orch fetch` copies it, and the page is rendered in headless
Chromium, whose DOM (after the page's script ran) and screenshot are checked.

The screenshot is kept under the test's tmp folder and, when ORCH_TEST_ARTIFACTS names a
folder, copied there as `report-screenshot.png` (with the page as `report.html`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.backends import FETCH_FILES
from orchestrator.report import browser_lines, diff_segments, to_json_text
from orchestrator.report_html import error_markdown
from tests.conftest import REPO, SAMPLES, git
from tests.needs import requires_tesseract

RUN = "ocr-20261127-100000-ab12"
N = 6  # lines scored
HOSTILE_AT = 5
HOSTILE = "<img src=x onerror=alert(1)> </script><b>ଓଡ଼ିଆ</b>"  # a reference the page must show
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/install.sh installs it)"
)


@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> Path:
    """A project whose results/<RUN>/ holds a real Tesseract run's fetched files: N lines of the
    bundled sample in two fonts (`scoring.group_by: font`), one with a hostile reference."""
    base = tmp_path_factory.mktemp("report")
    lines = base / "lines"
    lines.mkdir()
    rows = [json.loads(x) for x in (SAMPLES / "labels.jsonl").read_text().splitlines()[:N]]
    for i, row in enumerate(rows):
        shutil.copy(SAMPLES / row["image"], lines / row["image"])
        row["font"] = "<i>sans</i>" if i % 2 else "serif"
    rows[HOSTILE_AT]["text"] = HOSTILE
    (lines / "labels.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    )
    book = base / "ocr.yaml"
    book.write_text(
        f"name: ocr\ndata: {{source: {lines}}}\nscoring: {{group_by: font}}\n"
        "methods:\n  baseline: {kind: tesseract, psm: 7}\n"
        "  raw: {kind: tesseract, psm: 13, postprocess: {c: [clean]}}\n"
    )
    remote = base / "remote" / RUN
    cmd = [sys.executable, "-m", "gpu_worker", "run", str(book), "--out", str(remote)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    project = base / "proj"
    (project / "results" / RUN).mkdir(parents=True)
    (project / "orch.yaml").write_text("defaults:\n  host: local\n")
    for name in FETCH_FILES:
        if (remote / name).exists():
            shutil.copy(remote / name, project / "results" / RUN / name)
    return project


@pytest.fixture
def proj(fetched, tmp_path, monkeypatch) -> Path:
    """A copy of the fetched project for one test, as the cwd."""
    root = tmp_path / "proj"
    shutil.copytree(fetched, root)
    monkeypatch.chdir(root)
    return root


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile folder, never the network."""
    profile = Path(os.environ["HOME"]) / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    cmd += [f"--user-data-dir={profile}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def first_line(dom: str) -> tuple[str, str]:
    """The first line body the script drew: its index and its HTML."""
    match = re.search(r'<tbody class="line" data-index="(\d+)">(.*?)</tbody>', dom, re.S)
    assert match, "the script drew no line"
    return match.group(1), match.group(2)


@requires_tesseract
@requires_chromium
def test_report_renders_in_chromium_with_table_diff_and_escaped_text(proj, orch, tmp_path):
    res = orch("report", RUN)
    assert res.exit_code == 0, res.output
    page = proj / "results" / RUN / "report.html"
    assert f"{RUN}: wrote {page}" in res.output and f"thumbnails: {N} of {N} lines" in res.output
    text = page.read_text(encoding="utf-8")
    # self-contained: nothing but data: URIs and in-page anchors are referenced
    assert not re.search(r'(?:src|href)="(?!data:|#)', text)
    assert "default-src 'none'" in text
    block = text.split('id="report-data">')[1].split("</script>")[0]  # not cut by a reference
    assert [x["ref"] for x in json.loads(block)["lines"] if x["i"] == HOSTILE_AT] == [HOSTILE]

    shot = tmp_path / "report-screenshot.png"  # one Chromium start: the DOM and the screenshot
    dom = chromium("--dump-dom", f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    dom = dom.stdout
    assert "<th>method</th>" in dom and "CER (95% CI)" in dom  # the README's results table
    assert re.search(r"<td>raw</td>\s*<td[^>]*>(<strong>)?0\.\d{3}", dom)
    assert re.search(r"<td>raw\+c</td>\s*<td[^>]*>(<strong>)?0\.\d{3}", dom)  # post-correction
    assert "Post-correction raw+c vs raw" in dom  # its paired test against its source
    assert "<th>font</th>" in dom  # the per-group table and the error classes by group
    assert "<th>virama_conjunct</th>" in dom and "most frequent confusions" in dom
    assert '<img class="plot" src="data:image/png;base64,' in dom
    # the script drew every line, worst first, with thumbnails and the first line's diff
    results = json.loads((proj / "results" / RUN / "results.json").read_text())
    preds = [
        json.loads(x)
        for x in (proj / "results" / RUN / "predictions.jsonl").read_text().splitlines()
    ]
    assert dom.count('<tbody class="line"') == N == results["raw"]["n"]
    assert len(re.findall(r'<td class="img"><img src="data:image/png', dom)) == N
    worst = {}
    for p in preds:
        worst[p["index"]] = max(worst.get(p["index"], -1), 1 if p["cer"] is None else p["cer"])
    top = max(worst.values())
    index, body = first_line(dom)
    assert worst[int(index)] == top
    assert re.search(r"<(del|ins)>|<span class=\"sub\"", body), body
    assert f"showing {N} of {N} line(s)" in dom
    # untrusted text stays text: nothing from a reference or a group became an element
    assert '<img src="x"' not in dom and "<b>ଓଡ଼ିଆ" not in dom and "<i>sans</i>" not in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "&lt;i&gt;sans&lt;/i&gt;" in dom

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = os.environ.get("ORCH_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
        shutil.copy(page, Path(keep) / "report.html")


@requires_tesseract
def test_other_data_gives_no_thumbnails_and_bad_predictions_write_nothing(proj, orch):
    page = proj / "results" / RUN / "report.html"
    res = orch("report", RUN, "--images", str(SAMPLES))  # the bundled sample: not this run's data
    assert res.exit_code == 2 and not page.exists()
    assert res.output.startswith(f"orch: error: --images: {SAMPLES}/labels.jsonl is not the run's")
    results = proj / "results" / RUN / "results.json"
    doc = json.loads(results.read_text())
    doc["run"]["data"]["source"] = "/srv/gpu1/lines"  # a host's folder, absent here
    results.write_text(json.dumps(doc))
    res = orch("report", RUN, "--json")
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.stdout)
    assert out["thumbnails"] == 0 and out["lines"] == N
    assert out["methods"] == ["baseline", "raw", "raw+c"]
    assert out["notes"] == [
        "no thumbnails (the images are not fetched): /srv/gpu1/lines is not a labels.jsonl folder "
        "on this machine; pass --images DIR"
    ]
    assert out["notes"][0] in page.read_text()
    # with no run named: the newest run of each playbook; one without predictions is named
    other = proj / "results" / "cmd-20261127-110000-cd34"
    other.mkdir()
    doc = json.loads((proj / "results" / RUN / "results.json").read_text())
    doc["run"] |= {"playbook": "cmd", "run_id": other.name}
    (other / "results.json").write_text(json.dumps(doc))
    res = orch("report")
    assert res.exit_code == 0 and f"{RUN}: wrote" in res.stdout, res.output
    assert (
        res.stderr == f"orch: note: {other.name}: no predictions.jsonl, no lines to show; skipped\n"
    )
    shutil.rmtree(other)

    preds = proj / "results" / RUN / "predictions.jsonl"
    page.unlink()
    lines = preds.read_text().splitlines()
    preds.write_text("\n".join([*lines[:2], lines[2][:30], *lines[3:]]) + "\n")
    res = orch("report", RUN)
    assert res.exit_code == 1
    assert res.output.strip() == (
        f"orch: error: {preds}:3: invalid JSON; re-fetch the run; nothing was written"
    )
    row = json.loads(lines[2]) | {"cer": "0.5"}
    preds.write_text("\n".join([*lines[:2], json.dumps(row), *lines[3:]]) + "\n")
    res = orch("report", RUN)
    assert res.exit_code == 1 and "predictions.jsonl: object 3: expected index" in res.output
    preds.unlink()
    res = orch("report", RUN)
    assert res.exit_code == 1 and f"results/{RUN}/predictions.jsonl: missing" in res.output
    assert not page.exists()
    assert orch("report", "ocr-20261127-100000-zz99").exit_code == 1


def test_diff_segments_and_script_safe_json():
    assert diff_segments("abcd", "abxd") == [["=", "ab"], ["s", "x", "c"], ["=", "d"]]
    assert diff_segments("abc", "abcz") == [["=", "abc"], ["i", "z"]]
    assert diff_segments("abc", "") == [["d", "abc"]]
    assert diff_segments("", "") == []
    segs = diff_segments("ଓଡ଼ିଶା", "ଓଡିଶା")  # the nukta dropped
    assert ["d", "଼"] in segs and "".join(s[1] for s in segs if s[0] == "=") == "ଓଡିଶା"
    text = to_json_text({"t": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": "</script><!-- & \u2028"}
    rows = [
        {"index": 4, "method": "a", "reference": "ab \t c", "prediction": "abd", "cer": 0.5},
        {"index": 4, "method": "b", "reference": "ab c", "prediction": None, "cer": None},
        {"index": 1, "method": "a", "reference": "x", "prediction": "x", "cer": 0.0, "group": 3},
    ]
    rows[1]["error"] = "RuntimeError: CUDA out of memory"
    one, four = browser_lines(rows, "nfc", {4: "data:image/png;base64,AA=="})
    assert one == {"i": 1, "ref": "x", "group": "3", "img": None, "m": {"a": one["m"]["a"]}}
    assert four["ref"] == "ab c" and four["img"] == "data:image/png;base64,AA=="
    assert four["m"] == {
        "a": {"cer": 0.5, "seg": [["=", "ab"], ["s", "d", " c"]]},
        "b": {"cer": None, "err": "RuntimeError: CUDA out of memory", "seg": []},
    }
    old = {"baseline": {"cer": 0.1}, "run": {}}  # results from before the error analysis
    assert error_markdown(old) == (
        "This run's results.json has no error analysis (`errors`): a run made before it."
    )
    errors = {"substitutions": 1, "insertions": 1, "deletions": 1, "classes": {"nukta": 1}}
    errors["confusions"] = [["଼", "", 2], [" ", "\u200c", 1]]
    table = error_markdown({"b": {"errors": errors}, "run": {}})
    assert "| b | 3 | 1 | 1 | 1 | 1 |" in table and "◌଼ → ∅ ×2;  ␠ → U+200C ×1" in table


@requires_tesseract
def test_publish_report_writes_links_and_commits_the_page_once(proj, orch):
    (proj / "README.md").write_text(
        "# OCR\n\n<!-- orch:results:start -->\n<!-- orch:results:end -->\n"
    )
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "init")
    page = proj / "results" / RUN / "report.html"
    dry = orch("publish", "--report", "--no-hub", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"  write {page}" in dry.output and not page.exists()
    assert f"+Every line with each method's errors marked: [report](results/{RUN}/report.html)" in (
        dry.output
    )
    res = orch("publish", "--report", "--no-hub")
    assert res.exit_code == 0, res.output
    assert f"results/{RUN}/report.html" in git(proj, "ls-files")  # committed with the run
    assert 'id="report-data"' in page.read_text() and page.stat().st_mode & 0o044
    again = orch("publish", "--no-hub")  # the page made before stays linked, nothing changes
    assert again.exit_code == 0 and "nothing new to commit" in again.output, again.output
    assert f"[report](results/{RUN}/report.html)" in (proj / "README.md").read_text()
