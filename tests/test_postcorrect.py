"""Post-correction stages (gpu_worker/postcorrect): what each must fix and what it must leave.

Real Odia lines (the bundled sample's labels) as training text and as text that must survive.
"""

from __future__ import annotations

import importlib.util
import json
import math
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from gpu_worker.contract.methods import parse_method
from gpu_worker.contract.postprocess import STAGE_SETTINGS
from gpu_worker.postcorrect import STAGES, build
from gpu_worker.postcorrect.charlm import CharLM, Rescore
from gpu_worker.postcorrect.lexicon import Lexicon, distance
from gpu_worker.postcorrect.odia import Clean
from gpu_worker.tesseract_nbest import nbest, parse_hocr, recognize_nbest
from tests.needs import requires_tesseract

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "labels.jsonl"
LINES = [json.loads(r)["text"] for r in SAMPLE.read_text(encoding="utf-8").splitlines()]
CORPUS = SAMPLE.parent / "postcorrect" / "odia.txt"
ZWNJ = "\u200c"


def test_registry_matches_the_settings_table():
    assert set(STAGES) == set(STAGE_SETTINGS)
    for name, cls in STAGES.items():
        assert cls({}, LINES).options == STAGE_SETTINGS[name]
    with pytest.raises(ValueError, match=r"lexicon.max_edit: .*did you mean 'max_edits'"):
        build([{"stage": "lexicon", "max_edit": 1}], LINES)


def test_benchmark_set_keeps_training_and_test_text_apart():
    spec = importlib.util.spec_from_file_location(
        "postcorrect_set", SAMPLE.parent / "postcorrect_set.py"
    )
    pcset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pcset)
    corpus = pcset.read_corpus()
    train, test = pcset.split(corpus, LINES, 80, 7)
    assert len(corpus) > 200 and len(test) == 80 and len(train) == len(corpus) - 80
    assert not set(train) & set(test) and not set(train) & set(LINES)
    assert pcset.split(corpus, LINES, 80, 7) == (train, test)  # seeded


def test_clean_fixes_unicode_and_leaves_clean_odia_alone():
    clean = Clean({}, LINES)
    assert [clean.apply(t) for t in LINES] == LINES  # NFC Odia text: nothing to do
    assert clean.counts() == {"lines": len(LINES), "lines_changed": 0, "chars_changed": 0}
    # precomposed ଡ଼ (U+0B5C, a composition exclusion) -> ଡ + nukta, the NFC form
    assert clean.apply("ଓ\u0b5cିଶା") == "ଓ\u0b21\u0b3cିଶା"
    # Tesseract's ZWNJ after a word-final virama: the training text has none
    assert clean.apply(f"ଚିଲିକା ହ୍ରଦରେ ଡଲଫିନ୍{ZWNJ} ଦେଖାଯାଏ") == LINES[21]
    # mixed digits -> the training text's Odia digits; danda kept; spaces tidied
    assert clean.apply("  ଟଙ୍କା  ୧2୫ ଦେଇ।") == "ଟଙ୍କା ୧୨୫ ଦେଇ।"
    assert clean.apply("ବହି ଟି") == "ବହି ଟି" and clean.apply("ବହ ି") == "ବହି"
    # a Bengali/Devanagari letter in the same block position becomes the Odia one
    assert clean.apply("\u0995ଟକ") == "କଟକ" and clean.apply("\u0915ଟକ") == "କଟକ"
    # Tesseract's VA after a virama where the training text writes WA (ସ୍ୱ)
    assert clean.apply("ସ୍\u0b35ାସ୍ଥ୍ୟ") == "ସ୍\u0b71ାସ୍ଥ୍ୟ" and "ସ୍\u0b71" in LINES[32]
    assert clean.counts()["chars_changed"] >= 7
    keep = Clean({"joiners": "auto", "digits": "ascii", "other_scripts": "drop"}, [f"କ୍{ZWNJ}ଷ"])
    assert keep.apply(f"ନ୍{ZWNJ} ୧୨") == f"ନ୍{ZWNJ} 12"  # training text uses ZWNJ: kept
    assert keep.apply("\u0995ଟକ") == "ଟକ"
    with pytest.raises(ValueError, match="clean.digits"):
        Clean({"digits": "roman"}, LINES)


NO_LM = {"min_lm_gain": None}


def test_lexicon_corrects_unique_neighbours_only():
    lex = Lexicon(NO_LM, LINES)
    assert [lex.apply(t) for t in LINES] == LINES  # in-lexicon words are never touched
    assert lex.counts()["changed"] == 0 and lex.counts()["unknown"] == 0
    # one substituted vowel sign / one dropped nukta -> the one lexicon word at distance 1
    assert lex.apply("ଓଡ଼ିଶା ଭାରତର ଏକ ସୁନ୍ଦେର ରାଜ୍ୟ") == LINES[0]
    assert lex.apply("ମୁଁ ଓଡିଆ ଭାଷା ପଢ଼ୁଛି") == LINES[3]
    assert lex.apply("ନମସ୍କାର, ଆପଣ କେମିତି ଅଛନ୍ତ?") == LINES[20]  # punctuation kept
    assert lex.apply("ଜଗନ୍ନାଥ ମନ୍ଦିର") == "ଜଗନ୍ନାଥ ମନ୍ଦିର"
    changed = lex.counts()["changed"]
    assert changed == 3
    # beyond the budget (a 5-code-point word may differ by 1) or too short: left alone
    assert lex.apply("ହୃଦରେ ମା") == "ହୃଦରେ ମା" and distance("ହୃଦରେ", "ହ୍ରଦରେ") == 2
    # a tie between two lexicon words is left alone, unless the frequency option breaks it
    tie = ["ମାଛ ମାଛ", "ମାସ"]
    assert Lexicon(NO_LM, tie).apply("ମାଟ") == "ମାଟ"
    by_freq = {**NO_LM, "frequency_tie_break": True}
    assert Lexicon(by_freq, tie).apply("ମାଟ") == "ମାଛ"
    assert Lexicon(by_freq, ["ମାଛ", "ମାସ"]).apply("ମାଟ") == "ମାଟ"


def test_lexicon_guards_inflections_and_asks_the_lm():
    train = ["ଆମ ଘର ଓ ସହର", "ଘରେ ଘରେ ଦୀପ", "ସହରରେ ଗାଡ଼ି", "ଘରକୁ ଯାଅ", "ସହରକୁ ଯାଅ", "ଗାଁ ଗାଁରେ"]
    plain = Lexicon({**NO_LM, "guard_inflections": False}, train)
    assert plain.apply("ଘରରେ") == "ଘରେ"  # a valid form the lexicon lacks, one edit away
    guarded = Lexicon(NO_LM, train)  # ରେ and କୁ turn ଘର/ସହର into lexicon words: endings
    assert guarded.apply("ଘରରେ") == "ଘରରେ" and guarded.counts()["inflected"] == 1
    assert guarded.apply("ସହଇରେ") == "ସହରରେ"  # OCR damage is no inflection
    # the LM check (defaults), trained on the benchmark's corpus (no bundled line is in it):
    # Tesseract's garbled words are replaced, plausible words are not
    corpus = CORPUS.read_text(encoding="utf-8").split()
    assert not set(LINES) & set(CORPUS.read_text(encoding="utf-8").splitlines())
    lex = Lexicon({}, CORPUS.read_text(encoding="utf-8").splitlines())
    assert lex.apply("ଶଥଯାତ଼ରା ଆଷାଢ଼ ମାସରେ ହୁଏ") == LINES[11]
    assert lex.apply("ଏହି ବହିଟି ବହୃତ ଭଲ") == LINES[18]
    assert "ଜିଲ୍ଲା" not in corpus and "ଦିଲ୍ଲୀ" in corpus  # one edit apart, both words
    assert lex.apply(LINES[28]) == LINES[28]
    assert lex.counts()["changed"] == 2 and lex.counts()["low_gain"] >= 1


def test_lexicon_min_count_and_word_file(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("ପୋଖରୀ\nଡାକ୍ତରଖାନା ସରକାର\n", encoding="utf-8")
    lex = Lexicon({**NO_LM, "words": str(words), "min_count": 2}, LINES)
    assert lex.apply("ପୋଖରି") == "ପୋଖରୀ"  # from the word file
    assert lex.apply("ସୁନ୍ଦେର") == "ସୁନ୍ଦେର"  # ସୁନ୍ଦର occurs once: below min_count
    with pytest.raises(ValueError, match="lexicon.words"):
        Lexicon({"words": str(tmp_path / "missing.txt")}, LINES)


def test_rescore_prefers_the_lm_hypothesis_and_never_learns_scored_lines():
    train, scored = LINES[:30], LINES[30:]
    stage = Rescore({}, train)
    right = unicodedata.normalize("NFC", "ଓଡ଼ିଶା ଭାରତର ଏକ ସୁନ୍ଦର ରାଜ୍ୟ")
    wrong = "ଓଡିଶା ଭାରଚର ଏକ ସୁନ୍ଧର ରାଜ୍ୟ"
    assert stage.apply(wrong, [(wrong, -1.0), (right, -1.5)]) == right
    assert stage.apply(wrong, [(wrong, -1.0), (right, -80.0)]) == wrong  # beam score outweighs
    assert stage.apply(wrong, None) == wrong and stage.apply(wrong, []) == wrong
    assert stage.counts() == {"rescored": 2, "changed": 1, "no_nbest": 2}
    before = [stage.lm.log_prob(t) for t in scored]
    for text in scored:
        stage.apply(text, [(text, 0.0), (text[::-1], 0.0)])
    assert [stage.lm.log_prob(t) for t in scored] == before  # scoring does not train
    assert CharLM(train + scored).log_prob(scored[0]) > before[0]  # ...which would help it
    wb = CharLM(train, order=3, smoothing="witten_bell")
    assert wb.log_prob(right) > wb.log_prob(wrong)
    with pytest.raises(ValueError, match="smoothing"):
        CharLM(train, smoothing="add_one")


def test_pipeline_clean_then_lexicon():
    pipe = build([{"stage": "clean"}, {"stage": "lexicon", **NO_LM, "max_edits": 1}], LINES)
    tesseract = f"ଚିଲିକା ହ୍ରଦରେ ଡଲଫିନ୍{ZWNJ} ଦେଖାଯାଏ"
    assert pipe.apply(tesseract) == LINES[21]
    assert pipe.apply("ମହାନଦୀ ଓଡିଶାର ବଡ଼ ନଦୀ") == LINES[5]
    counts = pipe.counts()
    assert counts["clean"]["lines_changed"] == 1 and counts["lexicon"]["changed"] == 1


HOCR = """<div class='ocr_page'><span class='ocr_line'>
<span class='ocrx_word' id='word_1_1' title='bbox 0 0 9 9; x_wconf 70'>
 <span class='ocrx_cinfo' title='x_bboxes 0 0 5 9; x_conf 95.8'>ଭ</span>
  <span class='ocrx_cinfo' id='lstm_choices_1_1_1'>
   <span class='ocrx_cinfo' id='choice_1_1_1' title='x_confs 60'>ଭ</span>
   <span class='ocrx_cinfo' id='choice_1_1_2' title='x_confs 30'>ଗ</span>
   <span class='ocrx_cinfo' id='choice_1_1_3' title='x_confs 0'>ର</span>
  </span>
 <span class='ocrx_cinfo' title='x_bboxes 5 0 9 9; x_conf 97.9'>ତ</span>
  <span class='ocrx_cinfo' id='lstm_choices_1_1_2'>
   <span class='ocrx_cinfo' id='choice_1_1_4' title='x_confs 87.4'>ତ</span>
  </span>
</span>
<span class='ocrx_word' id='word_1_2' title='bbox 10 0 19 9; x_wconf 96'>
 <span class='ocrx_cinfo' title='x_bboxes 10 0 19 9; x_conf 99'>ଓ</span>
</span></span></div>"""


def test_tesseract_nbest_from_lstm_choices():
    words = parse_hocr(HOCR)
    assert words == [
        [[("ଭ", 95.8), ("ଭ", 60.0), ("ଗ", 30.0), ("ର", 0.0)], [("ତ", 97.9), ("ତ", 87.4)]],
        [[("ଓ", 99.0)]],
    ]
    hyps = nbest(words, 5)
    assert [t for t, _ in hyps] == ["ଭତ ଓ", "ଗତ ଓ"]  # a 0-confidence choice is no alternative
    assert hyps[0][1] == pytest.approx(math.log(60 / 90)) and hyps[1][1] < hyps[0][1]
    # the LM of real Odia text picks the word it knows: the n-best stage's whole job
    assert Rescore({"weight": 1.0}, LINES).apply("ଭତ ଓ", hyps) == "ଗତ ଓ"
    assert nbest([], 5) == []


@requires_tesseract
def test_tesseract_nbest_runs_tesseract():
    method = parse_method("t", {"kind": "tesseract"})
    with Image.open(SAMPLE.parent / "line-00.png") as img:
        hyps = recognize_nbest(img.convert("L"), method, 4)
    assert 1 <= len(hyps) <= 4
    assert [lp for _, lp in hyps] == sorted((lp for _, lp in hyps), reverse=True)
    assert all(lp <= 0 and len(t.split()) == len(hyps[0][0].split()) for t, lp in hyps)
