"""Metric values on hand-checked Odia pairs, and the `score` command that pins them."""

import json
import subprocess
import sys

import pytest

from gpu_worker.metrics import aggregate, normalize, score_pair, score_pairs

ODIA = "ଓଡ଼ିଆ ଭାଷା"  # 9 code points in NFC: ଓ ଡ ଼ ି ଆ, space, ଭ ା ଷ ା -> 10


def test_nfc_composes_and_decomposes_like_unicode():
    precomposed = "\u0b5c"  # ODIA LETTER RRA, excluded from composition: NFC decomposes it
    assert normalize(precomposed) == "\u0b21\u0b3c"
    assert normalize("\u0b21\u0b3c") == "\u0b21\u0b3c"
    assert normalize("  ଓଡ଼ିଆ \t ଭାଷା \n") == normalize(ODIA)
    assert len(normalize(ODIA)) == 10


def test_nfc_vs_nfd_spelling_is_not_an_error_after_nfc_but_is_without():
    ref, hyp = "ପଢ଼ୁଛି", "ପ\u0b5dୁଛି"  # nukta as a combining sign vs the precomposed letter
    assert score_pair(ref, hyp).char_edits == 0
    assert score_pair(ref, hyp, form="none").char_edits > 0


def test_vowel_sign_substitution_and_missing_nukta():
    # କି (ka + i sign) read as କୀ (ka + ii sign): one substituted code point out of 2
    s = score_pair("କି", "କୀ")
    assert (s.char_edits, s.chars, s.cer) == (1, 2, 0.5)
    # ଡ଼ read as ଡ: the nukta (U+0B3C) is deleted: 1 edit out of 3 code points in ଡ଼ା
    s = score_pair("ଡ଼ା", "ଡା")
    assert (s.char_edits, s.chars) == (1, 3)
    assert s.cer == pytest.approx(1 / 3)
    # a dropped virama splits a conjunct: ନ୍ତ (3 code points) read as ନତ
    assert score_pair("ନ୍ତ", "ନତ").char_edits == 1


def test_word_error_rate_on_odia():
    s = score_pair("ମୁଁ ଓଡ଼ିଆ ଭାଷା ପଢ଼ୁଛି", "ମୁଁ ଓଡିଆ ଭାଷା ପଢ଼ୁଛି")
    assert (s.word_edits, s.words) == (1, 4)
    assert s.wer == 0.25 and not s.exact


def test_empty_prediction_and_empty_reference():
    s = score_pair(ODIA, "")
    assert (s.char_edits, s.chars, s.cer, s.wer) == (10, 10, 1.0, 1.0)
    assert score_pair("", "").cer == 0.0 and score_pair("", "").exact
    s = score_pair("", "କଖ")
    assert (s.char_edits, s.chars, s.cer) == (2, 0, 1.0)


def test_corpus_level_is_total_edits_over_total_length_and_mean_is_beside_it():
    score = score_pairs([("କି", "କୀ"), ("ଓଡ଼ିଆ ଭାଷା", "ଓଡ଼ିଆ ଭାଷା"), ("", "କଖ")])
    # edits 1 + 0 + 2 over 2 + 10 + 0 characters; per-sample rates 0.5, 0.0, 1.0
    assert score.cer == pytest.approx(3 / 12)
    assert score.cer_mean == pytest.approx(0.5)
    assert score.exact_match == pytest.approx(1 / 3) and score.n == 3
    assert aggregate([]).n == 0


def test_score_command_prints_json(tmp_path):
    path = tmp_path / "pred.jsonl"
    rows = [
        {"reference": "କି", "prediction": "କୀ"},
        {"reference": "ଓଡ଼ିଆ ଭାଷା", "prediction": "ଓଡ଼ିଆ ଭାଷା"},
        {"reference": "ପଢ଼ୁଛି", "prediction": "ପ\u0b5dୁଛି"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "gpu_worker", "score", str(path)]
    nfc = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
    assert nfc["cer"] == pytest.approx(1 / 18) and nfc["n"] == 3
    assert nfc["exact_match"] == pytest.approx(2 / 3)
    raw = json.loads(
        subprocess.run([*cmd, "--normalize", "none"], capture_output=True, check=True).stdout
    )
    assert raw["cer"] > nfc["cer"]
    path.write_text('{"reference": "x"}\n')
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and "needs 'reference' and 'prediction'" in bad.stderr
