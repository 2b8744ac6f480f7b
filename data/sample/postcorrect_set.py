"""The post-correction benchmark's lines: training text and degraded test images, kept apart.

Contract:
- The corpus is `postcorrect/odia.txt` beside this file (one Odia sentence a line, NFC).
- `split` shuffles it with `seed` and takes `n_test` lines as test lines; the rest is training
  text, less any line equal to a test line or to one of the bundled sample lines (those are
  test lines of the benchmark too). Training and test text never share a line.
- Each test line is rendered (make_samples.render) and degraded one way, in turn: `blur`
  (Gaussian), `noise` (Gaussian noise and specks), `low_contrast` (grey ink on grey paper) or
  `skew` (rotated a few degrees), after a low-resolution scan (down- and upsampled) that every
  line gets; the strengths are drawn from the seeded generators.
- `write_set(out, ...)` writes `out/train.txt` (the training text, one line each) and
  `out/labels.jsonl` + `out/pc-NNN.png` ({"image", "text", "degradation"}). Deterministic for a
  seed; nothing is written under data/sample unless `out` is there.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SEED = 20261127
N_TEST = 80
CORPUS = Path(__file__).resolve().parent / "postcorrect" / "odia.txt"
DEGRADATIONS = ("blur", "noise", "low_contrast", "skew")
LOW_RES = (0.3, 0.5)


def read_corpus(path: Path = CORPUS) -> list[str]:
    """The corpus lines, NFC, blank lines and repeats left out."""
    lines = [unicodedata.normalize("NFC", ln.strip()) for ln in path.read_text("utf-8").split("\n")]
    return list(dict.fromkeys(ln for ln in lines if ln))


def split(
    corpus: Sequence[str], bundled: Sequence[str], n_test: int = N_TEST, seed: int = SEED
) -> tuple[list[str], list[str]]:
    """(train, test): disjoint lines; no bundled line is training text."""
    held = {unicodedata.normalize("NFC", t) for t in bundled}
    pool = [ln for ln in corpus if ln not in held]
    random.Random(seed).shuffle(pool)
    test = pool[:n_test]
    train = [ln for ln in corpus if ln not in held and ln not in set(test)]
    return train, test


def degrade(img: Image.Image, kind: str, rng: random.Random, np_rng) -> Image.Image:
    """One kind of degradation (see the module docstring) of a rendered line."""
    w, h = img.size
    scale = rng.uniform(*LOW_RES)  # every line: scanned at a low resolution, then upsampled
    img = img.resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.BILINEAR)
    img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 1.6)))
    if kind == "noise":
        arr = arr + np_rng.normal(0, rng.uniform(15, 30), size=arr.shape)
        specks = np_rng.random(arr.shape) < rng.uniform(0.0, 0.004)
        arr[specks] = np_rng.uniform(0, 100, size=int(specks.sum()))
    elif kind == "low_contrast":
        paper, ink = rng.uniform(190, 220), rng.uniform(70, 105)
        arr = ink + (arr / 255.0) * (paper - ink) + np_rng.normal(0, 8, size=arr.shape)
    elif kind == "skew":
        angle = rng.uniform(3.0, 6.0) * rng.choice((-1, 1))
        return img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=255)
    else:
        raise ValueError(f"unknown degradation '{kind}'; known: {', '.join(DEGRADATIONS)}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_set(
    out: Path,
    bundled: Sequence[str],
    render: Callable[..., Image.Image],
    fonts: Sequence[str],
    n_test: int = N_TEST,
    seed: int = SEED,
) -> str:
    """Write the training text and the degraded test lines under `out`; a one-line summary."""
    fonts = [f for f in fonts if Path(f).exists()]
    if not fonts:
        raise SystemExit("no Odia font: apt-get install fonts-lohit-orya fonts-samyak-orya")
    train, test = split(read_corpus(), bundled, n_test, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.txt").write_text("".join(t + "\n" for t in train), encoding="utf-8")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    rows = []
    for i, text in enumerate(test):
        kind = DEGRADATIONS[i % len(DEGRADATIONS)]
        img = render(text, fonts[i % len(fonts)], rng.randint(22, 32), rng)
        name = f"pc-{i:03d}.png"
        degrade(img, kind, rng, np_rng).save(out / name, optimize=True)
        rows.append({"image": name, "text": text, "degradation": kind})
    with open(out / "labels.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return f"wrote {len(train)} training lines and {len(rows)} test lines to {out}"
