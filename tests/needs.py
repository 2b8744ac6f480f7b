"""Markers for tests that need an outside program (CI installs them; a laptop may not have them)."""

import pytest

from gpu_worker.tesseract import TesseractMissing, check


def _tesseract_missing() -> str | None:
    """Why Tesseract with its Odia (`ori`) data cannot run here, or None when it can."""
    try:
        check("tesseract", "ori")
    except TesseractMissing as exc:
        return str(exc)
    return None


TESSERACT_MISSING = _tesseract_missing()

requires_tesseract = pytest.mark.skipif(
    TESSERACT_MISSING is not None, reason=f"needs tesseract with Odia data: {TESSERACT_MISSING}"
)
