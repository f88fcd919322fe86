"""Build small, valid PDFs by hand, so tests need no PDF writer library.

Each page shows its text in the standard Helvetica font, one PDF text line per
input line. Only Latin-1 text is supported (Helvetica's WinAnsi encoding).
"""

from __future__ import annotations

from pathlib import Path


def _escape(line: str) -> bytes:
    # Backslash and parentheses delimit PDF literal strings, so they must be escaped.
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return escaped.encode("latin-1")


def _content_stream(text: str) -> bytes:
    ops = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 720 Td"]
    for i, line in enumerate(text.split("\n")):
        if i:
            ops.append(b"T*")  # move to the next line (leading set by TL)
        ops.append(b"(" + _escape(line) + b") Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def serialize_pdf(objects: list[bytes], *, info_id: int | None = None) -> bytes:
    """Number ``objects`` from 1 (object 1 is the catalog) and write them with an exact xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"<< /Size %d /Root 1 0 R" % (len(objects) + 1)
    if info_id is not None:
        trailer += b" /Info %d 0 R" % info_id
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def make_pdf(path: str | Path, pages: list[str], *, title: str | None = None) -> Path:
    """Write a PDF with one page per string in ``pages`` and return its path.

    ``title`` sets the document information dictionary's ``/Title``.
    The cross-reference table holds exact byte offsets, so strict readers accept it.
    """
    if not pages:
        raise ValueError("a PDF needs at least one page")
    n = len(pages)
    first_page = 4  # objects 1-3: catalog, page tree, font
    page_ids = [first_page + 2 * i for i in range(n)]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids) + b"] /Count %d >>" % n,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, text in zip(page_ids, pages):
        stream = _content_stream(text)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream")
    info_id = None
    if title is not None:
        objects.append(b"<< /Title (" + _escape(title) + b") >>")
        info_id = len(objects)

    out = serialize_pdf(objects, info_id=info_id)
    path = Path(path)
    path.write_bytes(out)
    return path
