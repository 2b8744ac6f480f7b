"""Tesseract OCR as a decoding backend (`kind: tesseract`): an off-the-shelf peer in the table.

Runs the `tesseract` command (Debian: tesseract-ocr, plus tesseract-ocr-ori or
tesseract-ocr-script-orya for Odia) on each image, PNG on stdin, text on stdout; page segmentation
mode 7 (a single text line) by default. `check()` names the packages to install when the binary
or the language is missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess

PACKAGES = {"ori": "tesseract-ocr-ori", "Orya": "tesseract-ocr-script-orya"}


class TesseractMissing(RuntimeError):
    """The tesseract binary or its language data is not installed."""


def check(binary: str = "tesseract", lang: str = "ori") -> str:
    """Return tesseract's version line, or raise TesseractMissing naming the Debian packages."""
    path = shutil.which(binary)
    pack = PACKAGES.get(lang, f"tesseract-ocr-{lang.lower()}")
    if path is None:
        raise TesseractMissing(
            f"{binary} not found: install Debian's tesseract-ocr and {pack} "
            f"(apt-get install tesseract-ocr {pack})"
        )
    out = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=30)
    langs = set(out.stdout.split()[1:])
    if lang not in langs and f"script/{lang}" not in langs:
        raise TesseractMissing(
            f"tesseract has no '{lang}' language data: install Debian's {pack} "
            f"(apt-get install {pack})"
        )
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return (version.stdout or version.stderr).splitlines()[0].strip()


def recognize(image, method) -> str:
    """The text Tesseract reads in one PIL image, with the method's lang/psm/oem."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    cmd = [method.binary, "stdin", "stdout", "-l", method.lang, "--psm", str(method.psm)]
    if method.oem is not None:
        cmd += ["--oem", str(method.oem)]
    try:
        res = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, timeout=120)
    except FileNotFoundError:
        check(method.binary, method.lang)
        raise
    if res.returncode != 0:
        check(method.binary, method.lang)
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"tesseract exited {res.returncode}: {err[-1] if err else ''}")
    return res.stdout.decode("utf-8", "replace").strip()
