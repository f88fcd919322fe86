"""Write the Office and scanned samples in ``samples/docs/`` (committed; run again after editing this).

    pip install "ragkit[docs]" && python samples/make_office_samples.py

A Word document (headings, a table), a slide deck (speaker notes), a workbook (two sheets) and a
scanned letter: a PDF that is only a picture of its page, which ragkit reads by OCR (``ragkit[ocr]``).
The files are written deterministically (fixed dates and ids), so a rerun changes nothing.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from pathlib import Path

DOCS = Path(__file__).parent / "docs"
FIXED = datetime.datetime(2024, 5, 1, 12, 0, 0)


def write_docx(path: Path) -> None:
    import docx

    doc = docx.Document()
    doc.core_properties.title = "Apiary inspection record"
    doc.core_properties.created = doc.core_properties.modified = FIXED
    doc.add_heading("Apiary inspection record", level=1)
    doc.add_paragraph("Inspections of the home apiary, spring season. Each colony is opened on a warm, "
                      "calm day between 11:00 and 15:00, when most foragers are out.")
    doc.add_heading("What to record", level=2)
    doc.add_paragraph("Record the brood pattern, the number of frames of bees, queen cells and temper. "
                      "A spotty brood pattern with sunken cappings calls for a foulbrood check.")
    doc.add_heading("Colony log", level=2)
    rows = [("Hive", "Date", "Frames of bees", "Queen seen", "Notes"),
            ("Hive 1", "12 April", "7", "yes", "calm, eggs present"),
            ("Hive 2", "12 April", "5", "no", "two play cups, added a super"),
            ("Hive 3", "19 April", "9", "yes", "swarm cells on frame 4: artificial swarm made")]
    table = doc.add_table(rows=0, cols=len(rows[0]))
    for row in rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, row):
            cell.text = value
    doc.add_heading("Follow-up", level=2)
    doc.add_paragraph("Hive 3's artificial swarm stands on the old site; check the parent colony for a "
                      "mated queen after 21 days.")
    _save_zip(doc.save, path)


def write_pptx(path: Path) -> None:
    import pptx

    deck = pptx.Presentation()
    deck.core_properties.title = "Queen rearing for beginners"
    deck.core_properties.created = deck.core_properties.modified = FIXED
    slides = [
        ("Queen rearing for beginners", "Raise your own queens from your calmest colony.",
         "Welcome everyone; ask who has seen a queen cell before."),
        ("The Miller method", "Cut a frame of fresh comb into a zigzag edge; the bees build queen cells along it.",
         "The Miller method needs no grafting tools, which suits a first season."),
        ("Timing", "Start when drones are flying: mated queens need drones from nearby colonies.",
         "Mating flights happen within 5 to 10 days of emergence, on warm afternoons."),
    ]
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
    _save_zip(deck.save, path)


def write_xlsx(path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    yields = book.active
    yields.title = "Honey yields"
    yields.append(["Hive", "Year", "Spring crop (kg)", "Summer crop (kg)", "Moisture (%)"])
    for hive, year, spring, summer, moisture in [
        ("Hive 1", 2023, 8.5, 14.0, 17.2), ("Hive 2", 2023, 6.0, 11.5, 17.8), ("Hive 3", 2023, 12.5, 19.0, 16.9),
        ("Hive 1", 2024, 9.0, 15.5, 17.0), ("Hive 2", 2024, 4.5, 9.0, 18.4), ("Hive 3", 2024, 11.0, 21.5, 17.1),
    ]:
        yields.append([hive, year, spring, summer, moisture])
    treatments = book.create_sheet("Varroa treatments")
    treatments.append(["Hive", "Date", "Treatment", "Mite drop per day"])
    treatments.append(["Hive 1", "2024-08-05", "thymol gel", 12])
    treatments.append(["Hive 2", "2024-08-05", "formic acid strips", 31])
    treatments.append(["Hive 3", "2024-12-20", "oxalic acid dribble", 3])
    book.properties.created = book.properties.modified = FIXED
    _save_zip(book.save, path)


def write_scanned_pdf(path: Path) -> None:
    """A letter rendered to a 150 dpi greyscale picture (a fax-quality scan: OCR time grows with pixels,
    and the sample index is built by many tests) and saved as an image-only PDF."""
    from PIL import Image, ImageDraw, ImageFont

    lines = ["Parish Beekeepers Association", "", "Swarm collection service",
             "Members collect swarms free of charge from May to July.",
             "Call the swarm line and describe where the cluster hangs",
             "and how high it is. Never spray a swarm with water.",
             "A collector usually arrives within two hours."]
    page = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=33)
    for i, line in enumerate(lines):
        draw.text((110, 150 + i * 60), line, fill=0, font=font)
    page.save(path, "PDF", resolution=150.0, creationDate=FIXED.timetuple(), modDate=FIXED.timetuple())


def _save_zip(save, path: Path) -> None:
    """Save an Office file with fixed member dates, so that a rerun writes the same bytes."""
    buffer = io.BytesIO()
    save(buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=FIXED.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the time of saving
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2024-05-01T12:00:00Z", data)
            out.writestr(member, data)


if __name__ == "__main__":
    write_docx(DOCS / "basics" / "inspection-record.docx")
    write_pptx(DOCS / "basics" / "queen-rearing.pptx")
    write_xlsx(DOCS / "harvest" / "apiary-records.xlsx")
    write_scanned_pdf(DOCS / "seasons" / "swarm-collection-letter.pdf")
    print("wrote 4 samples to", DOCS)
