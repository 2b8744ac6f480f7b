"""Render the bundled Odia sample lines to PNG, degraded to look like scanned text lines.

Writes `line-NN.png` and `labels.jsonl` ({"image": ..., "text": ...}) next to this file. Needs
Debian's Odia fonts (fonts-lohit-orya, fonts-samyak-orya) and Pillow with raqm (its wheels have
it), which shapes Odia conjuncts and vowel signs correctly. Deterministic for a given SEED.
Usage: python data/sample/make_samples.py

`--postcorrect DIR [SEED]` writes the post-correction benchmark's set instead (postcorrect_set.py
beside this file): the lines of postcorrect/odia.txt split into training text and rendered test
lines, kept apart; the bundled lines above are test lines too, never training text.
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

SEED = 20261126
HERE = Path(__file__).resolve().parent
FONTS = [
    "/usr/share/fonts/truetype/lohit-oriya/Lohit-Odia.ttf",
    "/usr/share/fonts/truetype/samyak-fonts/Samyak-Oriya.ttf",
]
LINES = [
    "ଓଡ଼ିଶା ଭାରତର ଏକ ସୁନ୍ଦର ରାଜ୍ୟ",
    "ପୁରୀରେ ଜଗନ୍ନାଥ ମନ୍ଦିର ଅଛି",
    "ଆଜି ସକାଳୁ ବର୍ଷା ହେଉଛି",
    "ମୁଁ ଓଡ଼ିଆ ଭାଷା ପଢ଼ୁଛି",
    "କୃଷକ କ୍ଷେତରେ ଧାନ ଲଗାଉଛନ୍ତି",
    "ମହାନଦୀ ଓଡ଼ିଶାର ବଡ଼ ନଦୀ",
    "କୋଣାର୍କ ସୂର୍ଯ୍ୟ ମନ୍ଦିର ବିଶ୍ୱ ପ୍ରସିଦ୍ଧ",
    "ଭୁବନେଶ୍ୱର ମନ୍ଦିରର ସହର",
    "ପିଲାମାନେ ବିଦ୍ୟାଳୟକୁ ଯାଉଛନ୍ତି",
    "ଶିକ୍ଷକ ଶ୍ରେଣୀରେ ପାଠ ପଢ଼ାଉଛନ୍ତି",
    "ବଜାରରେ ମାଛ ଓ ପରିବା ମିଳେ",
    "ରଥଯାତ୍ରା ଆଷାଢ଼ ମାସରେ ହୁଏ",
    "କଟକ ଏକ ପୁରୁଣା ସହର",
    "ଗାଁର ଲୋକମାନେ ସରଳ ଓ ପରିଶ୍ରମୀ",
    "ସମୁଦ୍ର କୂଳରେ ବାଲି ଚିକ୍କଣ",
    "ଆକାଶରେ ଚନ୍ଦ୍ର ଓ ତାରା ଦେଖାଯାଉଛି",
    "ମା ରୋଷେଇ ଘରେ ଭାତ ରାନ୍ଧୁଛନ୍ତି",
    "ବାପା ଖବରକାଗଜ ପଢ଼ୁଛନ୍ତି",
    "ଏହି ବହିଟି ବହୁତ ଭଲ",
    "ଧନ୍ୟବାଦ, ପୁଣି ଆସିବେ",
    "ନମସ୍କାର, ଆପଣ କେମିତି ଅଛନ୍ତି?",
    "ଚିଲିକା ହ୍ରଦରେ ଡଲଫିନ୍ ଦେଖାଯାଏ",
    "ସମ୍ବଲପୁରୀ ଶାଢ଼ୀ ପ୍ରସିଦ୍ଧ",
    "ଓଡ଼ିଶୀ ନୃତ୍ୟ ଏକ ଶାସ୍ତ୍ରୀୟ କଳା",
    "ଟଙ୍କା ୧୨୫ ଦେଇ ବହି କିଣିଲି",
    "ବର୍ଷ ୨୦୨୪ ରେ ନୂଆ ରାସ୍ତା ହେଲା",
    "ଗଛରେ ଫୁଲ ଫୁଟିଛି",
    "ସନ୍ଧ୍ୟାରେ ଦୀପ ଜଳାଯାଏ",
    "ଜିଲ୍ଲା ସଦର ମହକୁମାରେ ସଭା ହେବ",
    "ଛାତ୍ରଛାତ୍ରୀମାନେ ପରୀକ୍ଷା ଦେଉଛନ୍ତି",
    "ସରକାର ନୂଆ ଯୋଜନା ଘୋଷଣା କଲେ",
    "ଡାକ୍ତରଖାନା ସକାଳ ନଅଟାରୁ ଖୋଲେ",
    "ପାଣି ପିଇବା ସ୍ୱାସ୍ଥ୍ୟ ପାଇଁ ଭଲ",
    "ଶୀତ ଦିନେ କୁହୁଡ଼ି ପଡ଼େ",
    "ଦଶହରା ଓ ଦୀପାବଳି ଉତ୍ସବ",
    "ଚିଠିଟି କାଲି ପହଞ୍ଚିବ",
    "ଆମ ଘର ପାଖରେ ଏକ ପୋଖରୀ ଅଛି",
    "ରେଳଗାଡ଼ି ଷ୍ଟେସନରେ ଅଟକିଲା",
    "ବିଜ୍ଞାନ ଓ ଗଣିତ ମୋର ପ୍ରିୟ ବିଷୟ",
    "ସାହିତ୍ୟ ସମାଜର ଦର୍ପଣ",
]


def render(text: str, font_path: str, size: int, rng: random.Random) -> Image.Image:
    """One line of text, dark on light, with a margin."""
    font = ImageFont.truetype(font_path, size, layout_engine=ImageFont.Layout.RAQM)
    left, top, right, bottom = font.getbbox(text, language="or")
    pad = rng.randint(6, 14)
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ink = rng.randint(0, 70)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=ink, language="or")
    return img


def degrade(img: Image.Image, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    """Skew, uneven background, blur, low resolution and sensor noise, like a scanned line."""
    img = img.rotate(rng.uniform(-2.0, 2.0), resample=Image.BICUBIC, expand=True, fillcolor=255)
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape
    ramp = np.linspace(0, 1, w)[None, :] * rng.uniform(-40, 40) + rng.uniform(-30, 0)
    paper = 255 + ramp + np_rng.normal(0, 6, size=(h, w)).cumsum(axis=1) / np.sqrt(w) * 3
    ink = arr / 255.0
    arr = paper * ink + (1 - ink) * arr.min()
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    scale = rng.uniform(0.3, 0.6)
    small = img.resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.BILINEAR)
    img = small.resize((w, h), Image.BILINEAR).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2))
    )
    arr = np.asarray(img, dtype=np.float32) + np_rng.normal(0, rng.uniform(6, 18), size=(h, w))
    specks = np_rng.random((h, w)) < rng.uniform(0.0, 0.004)
    arr[specks] = np_rng.uniform(0, 120, size=specks.sum())
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def main() -> None:
    """Render every line and write labels.jsonl (or the post-correction set, see above)."""
    if not features.check("raqm"):
        raise SystemExit("Pillow without raqm cannot shape Odia; install Pillow's wheel")
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--postcorrect":
        from postcorrect_set import SEED as PC_SEED
        from postcorrect_set import write_set

        seed = int(sys.argv[3]) if len(sys.argv) == 4 else PC_SEED
        print(write_set(Path(sys.argv[2]), LINES, render, FONTS, seed=seed))
        return
    fonts = [f for f in FONTS if Path(f).exists()]
    if not fonts:
        raise SystemExit("no Odia font: apt-get install fonts-lohit-orya fonts-samyak-orya")
    rng, np_rng = random.Random(SEED), np.random.default_rng(SEED)
    rows = []
    for i, text in enumerate(LINES):
        text = unicodedata.normalize("NFC", text)
        img = render(text, fonts[i % len(fonts)], rng.randint(18, 30), rng)
        name = f"line-{i:02d}.png"
        degrade(img, rng, np_rng).save(HERE / name, optimize=True)
        rows.append({"image": name, "text": text})
    with open(HERE / "labels.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} lines to {HERE}")


if __name__ == "__main__":
    main()
