"""Tesseract's n-best for one text line, from the LSTM's per-symbol alternatives.

Contract:
- `recognize_nbest(image, method, n)` runs tesseract once more with hOCR output,
  `lstm_choice_mode=2` (the alternatives of every recognised symbol, each with a confidence in
  percent) and `hocr_char_boxes=1`, and returns up to `n` hypotheses `[(text, log_prob), ...]`,
  best first: the format `gpu_worker.postcorrect` stages take as `nbest`.
- A hypothesis picks one alternative per recognised symbol (so every hypothesis has the same
  number of symbols as the recognised line; dropped and inserted symbols are out of its reach);
  words are joined by single spaces. A symbol's alternatives with a confidence above 0 are
  normalised to probabilities; the recognised symbol is always one of them. `log_prob` is the sum
  of the chosen alternatives' log-probabilities; the `n` best come from a beam of width `n`.
- `parse_hocr(text)` -> words -> symbols -> [(alternative, confidence)], for tests.
- Needs Tesseract 4.1+ (LSTM choices); `gpu_worker.tesseract.check` names missing packages.
"""

from __future__ import annotations

import html
import io
import math
import re
import subprocess

_SPAN = re.compile(
    r"class='ocrx_word'|<span class='ocrx_cinfo'(?: id='([^']*)')?(?: title='([^']*)')?>([^<]*)"
)
_CONF = re.compile(r"x_confs? ([\d.]+)")

Symbol = list[tuple[str, float]]


def parse_hocr(text: str) -> list[list[Symbol]]:
    """Words of symbols; each symbol the recognised character first, then its alternatives."""
    words: list[list[Symbol]] = []
    current: Symbol | None = None
    for match in _SPAN.finditer(text):
        ident, title, char = (
            match.group(1) or "",
            match.group(2) or "",
            html.unescape(match[3] or ""),
        )
        if match.group(0) == "class='ocrx_word'":
            words.append([])
            current = None
        elif ident.startswith("lstm_choices") or not words:
            continue
        elif ident.startswith("choice_"):
            conf = _CONF.search(title)
            if current is not None and char and conf:
                current.append((char, float(conf.group(1))))
        elif char:
            conf = _CONF.search(title)
            current = [(char, float(conf.group(1)) if conf else 100.0)]
            words[-1].append(current)
    return [w for w in words if w]


def _alternatives(symbol: Symbol) -> list[tuple[str, float]]:
    """(character, log probability) of a symbol's alternatives, the recognised one included."""
    chosen, chosen_conf = symbol[0]
    confs: dict[str, float] = {}
    for char, conf in symbol[1:]:
        if conf > 0:
            confs[char] = max(confs.get(char, 0.0), conf)
    confs.setdefault(chosen, max(chosen_conf, 1e-3))
    total = sum(confs.values())
    return [(c, math.log(v / total)) for c, v in confs.items()]


def nbest(words: list[list[Symbol]], n: int) -> list[tuple[str, float]]:
    """Up to `n` hypotheses (text, log_prob), best first, from a beam over the symbols."""
    beam: list[tuple[float, str]] = [(0.0, "")]
    for w, word in enumerate(words):
        for s, symbol in enumerate(word):
            sep = " " if w and not s else ""
            grown = [
                (lp + alp, text + sep + c) for lp, text in beam for c, alp in _alternatives(symbol)
            ]
            beam = sorted(grown, key=lambda h: -h[0])[:n]
    return [(text, lp) for lp, text in beam] if words else []


def recognize_nbest(image, method, n: int = 10) -> list[tuple[str, float]]:
    """The n-best of one PIL image (see the module docstring)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    cmd = [method.binary, "stdin", "stdout", "-l", method.lang, "--psm", str(method.psm)]
    if method.oem is not None:
        cmd += ["--oem", str(method.oem)]
    cmd += ["-c", "lstm_choice_mode=2", "-c", "hocr_char_boxes=1", "hocr"]
    res = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, timeout=120)
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"tesseract exited {res.returncode}: {err[-1] if err else ''}")
    return nbest(parse_hocr(res.stdout.decode("utf-8", "replace")), n)
