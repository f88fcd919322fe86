"""OCR of scanned pages and images, offline, with Debian's ``tesseract-ocr`` through pytesseract
(``pip install 'ragkit[ocr]'`` and ``apt-get install tesseract-ocr``).

Why tesseract: it is one Debian package (about 30 MB with its English model) that every Linux
distribution ships, reads a 300 dpi page in about a second on one core, and pytesseract runs it as a
subprocess with a timeout, so a page is bounded in time (``page_seconds``) and, being a child of the
parsing worker, in memory (its ``RLIMIT_AS``). rapidocr brings onnxruntime (80 MB) and its models;
measured numbers are in the README.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import shutil
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.formats.text import TextBuilder
from ragkit.ingest.registry import LoadContext, needs_extra
from ragkit.types import Document

__all__ = ["MAX_PIXELS", "OcrTimeout", "load_image", "ocr_image", "ocr_missing"]

logger = logging.getLogger(__name__)

# A larger image is skipped: OCR time grows with pixels, and a small file can decode to a huge image.
MAX_PIXELS = 40_000_000


class OcrTimeout(Exception):
    """One page or image took longer than its limit."""


def ocr_missing() -> str | None:
    """What is missing for OCR ("pytesseract", "the tesseract-ocr program"), or ``None`` if nothing."""
    # Found, not imported: importing pytesseract imports pandas when it is installed (2.4 s), and every
    # PDF asks this before knowing whether any page needs OCR.
    if importlib.util.find_spec("pytesseract") is None:
        return "pytesseract"
    if shutil.which("tesseract") is None:
        return "the tesseract-ocr program (apt-get install tesseract-ocr)"
    return None


def ocr_image(image: Any, seconds: float | None, language: str = "eng") -> str:
    """The text of a PIL image; :class:`OcrTimeout` after ``seconds``; ValueError if too large."""
    import pytesseract

    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"image of {width}x{height} pixels is over the OCR limit of {MAX_PIXELS} pixels")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    try:
        return str(pytesseract.image_to_string(image, lang=language, timeout=seconds or 0))
    except RuntimeError as exc:
        if "timeout" in str(exc).lower():
            raise OcrTimeout from None
        raise


def load_image(data: bytes, context: LoadContext) -> list[Document]:
    """A ``.png``/``.jpg``/``.tiff`` file's text by OCR; each frame of a multi-page TIFF is a page."""
    if (missing := ocr_missing()) is not None:
        raise needs_extra(context.source, "ocr", missing)
    from PIL import Image, ImageSequence

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # larger ones raise instead of decoding
    builder = TextBuilder(context.source, context.max_chars, truncate=True)
    pages: list[list[int]] = []
    try:
        with Image.open(io.BytesIO(data)) as image:
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                text = _frame_text(frame, number, context)
                if text and not builder.full:
                    pages.append([len(builder.text) + (2 if builder.text else 0), number])
                    builder.add(text, f"page {number}")
    except LoadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise LoadError(context.source, f"cannot read image ({type(exc).__name__}: {exc})") from None
    doc = builder.document(context.metadata("image", ocr_pages=[n for _, n in pages]), "no text found by OCR")
    return [Document(doc.id, doc.text, {**doc.metadata, "pages": pages,
                                        "notes": [*doc.metadata.get("notes", []), "read by OCR"]})]


def _frame_text(frame: Any, number: int, context: LoadContext) -> str:
    try:
        return ocr_image(frame, context.page_seconds).strip()
    except OcrTimeout:
        raise LoadError(context.source, f"too complex: OCR of page {number} took over "
                                        f"{context.page_seconds:g} s (page_seconds)") from None
