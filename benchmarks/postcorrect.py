"""Measure post-correction on Tesseract's Odia output: CER before and after, paired.

Test lines: the 40 bundled sample lines (data/sample) plus the rendered post-correction set
(`data/sample/make_samples.py --postcorrect DIR`, generated into DIR when it has no labels.jsonl:
blur, noise, low contrast, skew; seeded). The stages learn only from that set's train.txt, whose
lines are never test lines. Tesseract (`gpu_worker.tesseract`, lang ori, psm 7) reads every test
image once as text and once for its n-best (`gpu_worker.tesseract_nbest`: the LSTM's
per-symbol alternatives, `lstm_choice_mode=2`); then the methods `tesseract` (the text), `clean`,
`clean+lexicon`, `clean+lexicon-unguarded` (no inflection guard, no LM check), `rescore` (the
n-best rescored by the character LM, weight 0.3) and `rescore+clean+lexicon`
(`gpu_worker.postcorrect`) are scored with `metrics.score_pair` and compared with the text by
`stats.method_statistics` (paired bootstrap over lines, 10,000 resamples: ΔCER, 95% interval, p
and Holm's p over all comparisons). A line without an n-best (empty output) keeps the text.
Also reported: CER per group (bundled / degradation), the lexicon's precision against the
references (a changed word became a reference word / a reference word became a non-reference
word / a wrong word stayed wrong), how many reference words the lexicon holds, and the error
classes (`gpu_worker.errors`) before and after, and how much of the error comes from lines
Tesseract returned empty (no post-correction can recover those) with the CER on the other lines,
and the CER of the n-best's first hypotheses (the choice mode decodes a little differently).
Usage: python benchmarks/postcorrect.py [--set DIR] [--seed N] [--workers N] [--resamples B]
       [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_worker import errors, stats, tesseract  # noqa: E402
from gpu_worker.contract.methods import parse_method  # noqa: E402
from gpu_worker.metrics import normalize, score_pair  # noqa: E402
from gpu_worker.postcorrect import build  # noqa: E402
from gpu_worker.postcorrect.lexicon import split_word, words_of  # noqa: E402
from gpu_worker.tesseract_nbest import recognize_nbest  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
UNGUARDED = {"stage": "lexicon", "guard_inflections": False, "min_lm_gain": None}
RESCORE = {"stage": "rescore", "weight": 0.3}  # the weight chosen on the set of seed 7
NBEST = 10
RESAMPLES = 10_000  # the smallest p a bootstrap of B resamples can show is 2 / (B + 1)
METHODS = {
    "clean": [{"stage": "clean"}],
    "clean+lexicon": [{"stage": "clean"}, {"stage": "lexicon"}],
    "clean+lexicon-unguarded": [{"stage": "clean"}, UNGUARDED],
    "rescore": [RESCORE],
    "rescore+clean+lexicon": [RESCORE, {"stage": "clean"}, {"stage": "lexicon"}],
}
BASELINE = "tesseract"
LEXICONS = ("clean+lexicon", "clean+lexicon-unguarded")


def load_lines(set_dir: Path, seed: int | None = None) -> tuple[list[dict], list[str]]:
    """(test rows with `path` and `group`, training text); renders the set when missing."""
    if not (set_dir / "labels.jsonl").exists():
        cmd = [sys.executable, str(SAMPLE / "make_samples.py"), "--postcorrect", str(set_dir)]
        subprocess.run(cmd + ([str(seed)] if seed is not None else []), check=True)
    rows = []
    for folder, group in ((SAMPLE, "bundled"), (set_dir, None)):
        for raw in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(raw)
            row["path"], row["group"] = folder / row["image"], group or row["degradation"]
            rows.append(row)
    train = (set_dir / "train.txt").read_text(encoding="utf-8").splitlines()
    overlap = {normalize(r["text"]) for r in rows} & {normalize(t) for t in train}
    if overlap:
        raise SystemExit(f"{len(overlap)} test lines are in train.txt: the set is not held out")
    return rows, train


def read_all(rows: list[dict], workers: int) -> tuple[list[str], list[list]]:
    """Tesseract's text and n-best (`tesseract_nbest`) for every row's image."""
    from PIL import Image

    method = parse_method(BASELINE, {"kind": "tesseract"})
    print(tesseract.check(method.binary, method.lang), file=sys.stderr)

    def one(row: dict) -> tuple[str, list]:
        with Image.open(row["path"]) as img:
            gray = img.convert("L")
            return tesseract.recognize(gray, method), recognize_nbest(gray, method, NBEST)

    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(one, rows))
    return [text for text, _ in done], [nb for _, nb in done]


def word_outcomes(before: str, after: str, reference: str) -> Counter:
    """How the lexicon's changed words fare against the reference's words."""
    ref = Counter(split_word(w)[1] for w in normalize(reference).split())
    out: Counter = Counter()
    for old, new in zip(before.split(), after.split(), strict=True):
        old, new = split_word(old)[1], split_word(new)[1]
        if old == new:
            continue
        out["changed"] += 1
        if ref[new] and not ref[old]:
            out["to_right"] += 1
        elif ref[old] and not ref[new]:
            out["to_wrong"] += 1
        else:
            out["wrong_to_wrong" if not ref[new] else "right_to_right"] += 1
    return out


def lexicon_precision(rows: list[dict], before: list[str], after: list[str]) -> dict:
    """The lexicon stage's changed words, by outcome against the references."""
    outcome: Counter = Counter()
    for r, b, a in zip(rows, before, after, strict=True):
        outcome += word_outcomes(b, a, r["text"])
    return {k: outcome.get(k, 0) for k in ("changed", "to_right", "to_wrong", "wrong_to_wrong")}


def score_method(rows: list[dict], texts: list[str]) -> tuple[dict, dict]:
    """(figures, per-line counts for `stats`) of one method's texts."""
    scores = [score_pair(r["text"], t) for r, t in zip(rows, texts, strict=True)]
    groups: dict[str, list[int]] = {}
    for r, s in zip(rows, scores, strict=True):
        g = groups.setdefault(r["group"], [0, 0])
        g[0], g[1] = g[0] + s.char_edits, g[1] + s.chars
    edits = errors.total(
        errors.line_errors(r["text"], t, script="odia") for r, t in zip(rows, texts, strict=True)
    )
    figures = {
        "cer": sum(s.char_edits for s in scores) / sum(s.chars for s in scores),
        "wer": sum(s.word_edits for s in scores) / sum(s.words for s in scores),
        "cer_by_group": {g: round(e / c, 4) for g, (e, c) in sorted(groups.items())},
        "errors": edits.to_json(),
    }
    return figures, {
        i: (s.char_edits, s.chars, s.word_edits, s.words) for i, s in enumerate(scores)
    }


def diagnostics(rows: list[dict], raw: list[str], nbests: list[list], counts: dict) -> dict:
    """Empty Tesseract lines (share of the error, CER elsewhere) and the n-best's first CER."""
    empty = {i for i, t in enumerate(raw) if not t.strip()}
    read = [i for i in range(len(rows)) if i not in empty]
    base = [counts[BASELINE][i][0] for i in range(len(rows))]
    firsts = [nb[0][0] if nb else t for nb, t in zip(nbests, raw, strict=True)]
    top1 = [score_pair(r["text"], t) for r, t in zip(rows, firsts, strict=True)]
    return {
        "empty_output": {
            "lines": len(empty),
            "share_of_baseline_edits": round(sum(base[i] for i in empty) / sum(base), 4),
            "cer_on_read_lines": {
                m: round(sum(c[i][0] for i in read) / sum(c[i][1] for i in read), 4)
                for m, c in counts.items()
            },
        },
        "nbest": {
            "lines_with_nbest": sum(bool(nb) for nb in nbests),
            "top1_same_as_text": sum(
                bool(nb) and nb[0][0] == t for nb, t in zip(nbests, raw, strict=True)
            ),
            "top1_cer": round(sum(s.char_edits for s in top1) / sum(s.chars for s in top1), 4),
        },
    }


def run(set_dir: Path, workers: int, seed: int | None = None, resamples: int = RESAMPLES) -> dict:
    """Every figure of the benchmark, as a JSON-ready dict."""
    rows, train = load_lines(set_dir, seed)
    raw, nbests = read_all(rows, workers)
    outputs = {BASELINE: raw}
    pipes = {name: build(stages, train) for name, stages in METHODS.items()}
    for name, pipe in pipes.items():
        outputs[name] = [pipe.apply(text, nb) for text, nb in zip(raw, nbests, strict=True)]
    counts: dict[str, dict[int, tuple[int, int, int, int]]] = {}
    result: dict = {"lines": len(rows), "train_lines": len(train), "methods": {}}
    for name, texts in outputs.items():
        figures, counts[name] = score_method(rows, texts)
        figures["stages"] = pipes[name].counts() if name in pipes else {}
        result["methods"][name] = figures
    for name, st in stats.method_statistics(counts, BASELINE, resamples).items():
        result["methods"][name].update(st)
    result.update(diagnostics(rows, raw, nbests, counts))
    lexicon = words_of(train)
    ref_words = words_of(r["text"] for r in rows)
    result["lexicon"] = {
        **{name: lexicon_precision(rows, outputs["clean"], outputs[name]) for name in LEXICONS},
        "lexicon_words": len(lexicon),
        "test_words": sum(ref_words.values()),
        "test_words_in_lexicon": sum(n for w, n in ref_words.items() if w in lexicon),
    }
    return result


def report(res: dict) -> str:
    """The figures as plain text."""
    base = res["methods"][BASELINE]["cer"]
    out = [f"{res['lines']} test lines, {res['train_lines']} training lines (disjoint)"]
    for name, m in res["methods"].items():
        line = f"{name:14s} CER {m['cer']:.4f} {m['cer_ci']}  WER {m['wer']:.4f}"
        vs = m.get("vs_baseline")
        if vs:
            rel = -vs["delta_cer"] / base * 100 if base else 0.0
            line += (
                f"  ΔCER {vs['delta_cer']:+.4f} {vs['ci']} p={vs['p_value']:.4f} "
                f"p_holm={vs['p_holm']:.4f} ({rel:.1f}% relative reduction)"
            )
        out += [line, f"    by group {m['cer_by_group']}", f"    errors {m['errors']['classes']}"]
        e = m["errors"]
        out.append(f"    S/I/D {e['substitutions']}/{e['insertions']}/{e['deletions']}")
        out += [f"    top confusions {m['errors']['confusions'][:6]}"]
        if m["stages"]:
            out.append(f"    stages {m['stages']}")
    out.append(f"lexicon {res['lexicon']}")
    out.append(f"empty Tesseract output {res['empty_output']}")
    out.append(f"n-best (lstm_choice_mode=2) {res['nbest']}")
    return "\n".join(out)


def main() -> None:
    """Parse the arguments, run, print (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, help="the rendered set's folder (default: a temp dir)")
    parser.add_argument("--seed", type=int, help="the set's seed (default: postcorrect_set.SEED)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.set or Path(tmp), args.workers, args.seed, args.resamples)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
