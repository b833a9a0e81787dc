"""The report as a PDF (fpdf2) with a Unicode font (DejaVu, Debian ``fonts-dejavu-core``).

Headers (patient, study with dates as YYYY-MM-DD, status, the signing user with licence/ID),
Findings and Impression with unreviewed AI text in another colour and a banner while the report
is not signed, key-image thumbnails, and a footer with the report id and version that also says,
with the model id and version, when the report keeps AI-written text. Without the DejaVu font
the PDF falls back to a core font that only has Latin-1 letters; it then says so on the page
and in the returned warnings. Characters the font has no glyph for (e.g. Chinese with DejaVu)
are counted in the warnings too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from app.reporting.atomic import write_bytes_atomic
from app.reporting.hl7_oru import ai_note, person_components
from app.reporting.report import (
    SECTION_KINDS,
    Report,
    ReportStatus,
    display_name,
    format_dicom_date,
    format_dicom_datetime,
)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_MISSING = (
    "Unicode font not found (install the Debian package fonts-dejavu-core): "
    "letters outside Latin-1 are shown as '?'"
)
AI_COLOUR = (176, 84, 0)
TEXT_COLOUR = (0, 0, 0)


def pdf_file_name(report: Report) -> str:
    """A file name that identifies the study and the report version, e.g.
    ``report_ACC123_CT_2026-01-01_final_v1.pdf`` (accession, modality, study date, status)."""
    study = report.study
    parts = [
        "report",
        study.accession_number or study.study_instance_uid,
        study.modality,
        format_dicom_date(study.study_datetime),
        report.status.value,
        f"v{report.version}",
    ]
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-") for p in parts if p) + ".pdf"


class _ReportPdf(FPDF):
    footer_text = ""
    font_family_name = "helvetica"

    def footer(self) -> None:
        lines = f"{self.footer_text}  page {self.page_no()}/{{nb}}".split("\n")
        self.set_y(-8 - 4 * len(lines))
        self.set_font(self.font_family_name, size=7)
        self.set_text_color(*TEXT_COLOUR)
        for line in lines:
            self.cell(0, 4, line, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render_pdf(
    report: Report,
    path: Path,
    *,
    key_images: Mapping[str, np.ndarray] | None = None,
    institution: str = "",
    font_dir: Path = FONT_DIR,
    ai_models: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Write the report PDF to ``path`` atomically; returns warnings (missing font/glyphs).

    ``key_images``: key image name -> displayed pixels (H, W) or (H, W, 3) uint8.
    ``ai_models``: (model id, version) of the models that wrote report text.
    """
    warnings: list[str] = []
    pdf = _ReportPdf(format="A4")
    regular, bold = font_dir / "DejaVuSans.ttf", font_dir / "DejaVuSans-Bold.ttf"
    glyphs: set[int] | None = None
    if regular.is_file() and bold.is_file():
        pdf.add_font("dejavu", "", str(regular))
        pdf.add_font("dejavu", "B", str(bold))
        pdf.font_family_name = "dejavu"
        glyphs = set(TTFont(str(regular), lazy=True).getBestCmap())
    else:
        warnings.append(FONT_MISSING)

    def clean(text: str) -> str:
        if glyphs is None:
            return text.encode("latin-1", errors="replace").decode("latin-1")
        return text

    family = pdf.font_family_name
    signed = (
        report.status is not ReportStatus.DRAFT
        and not report.amendment_open
        and not report.edited_since_signed
    )
    pdf.footer_text = f"Report {report.report_id} version {report.version}"
    if report.contains_ai_text:
        note = ai_note(ai_models, reviewed=signed and not report.unreviewed_ai_spans())
        pdf.footer_text = clean(note) + "\n" + pdf.footer_text
    pdf.set_title("Radiology report")
    pdf.set_auto_page_break(True, margin=24)
    pdf.add_page()
    if glyphs is None:
        pdf.set_font(family, size=8)
        pdf.set_text_color(200, 0, 0)
        pdf.multi_cell(0, 4, FONT_MISSING, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*TEXT_COLOUR)
    pdf.set_font(family, "B", 15)
    pdf.cell(0, 9, clean(institution or "Radiology report"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if not signed or report.unreviewed_ai_spans():
        pdf.set_fill_color(255, 236, 200)
        pdf.set_font(family, "B", 10)
        pdf.multi_cell(
            0,
            6,
            "DRAFT - not signed. Coloured text is AI-generated and has not been reviewed; not for diagnosis.",
            fill=True,
            align="L",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    study = report.study
    rows = [
        ("Patient", display_name(study.patient_name)),
        ("Patient ID", study.patient_id),
        ("Birth date / sex", f"{format_dicom_date(study.patient_birth_date)} {study.patient_sex}".strip()),
        ("Study", study.study_description or study.modality),
        ("Study date", format_dicom_datetime(study.study_datetime)),
        ("Accession", study.accession_number),
        ("Study UID", study.study_instance_uid),
        ("Status", report.status.value + (" (amendment in progress)" if report.amendment_open else "")),
    ]
    for signature in report.signatures:
        family_name, given = person_components(signature.radiologist)
        who = f"{given} {family_name}".strip() or "(unnamed)"
        if signature.licence:
            who += f" (licence/ID {signature.licence})"
        rows.append((f"Signed {signature.status.value}", f"{who}, {signature.at[:19].replace('T', ' ')}"))
    pdf.ln(2)
    for label, value in rows:
        pdf.set_font(family, "B", 9)
        pdf.cell(40, 5, label)
        pdf.set_font(family, "", 9)
        pdf.multi_cell(0, 5, clean(value), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    missing = set()
    for kind in SECTION_KINDS:
        pdf.ln(3)
        pdf.set_font(family, "B", 12)
        pdf.cell(0, 7, kind.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(family, "", 10)
        for span in report.spans(kind.key):
            if glyphs is not None:
                missing.update(ch for ch in span.text if ord(ch) not in glyphs and ch not in "\n\t")
            pdf.set_text_color(*(AI_COLOUR if span.ai else TEXT_COLOUR))
            pdf.write(5, clean(span.text))
        pdf.set_text_color(*TEXT_COLOUR)
        pdf.ln(6)
    if missing:
        warnings.append(f"{len(missing)} distinct character(s) have no glyph in the PDF font")

    images = [(uid, pixels) for uid, pixels in (key_images or {}).items()]
    if images:
        pdf.ln(3)
        pdf.set_font(family, "B", 12)
        pdf.cell(0, 7, "Key images", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        size = 55.0
        for index, (uid, pixels) in enumerate(images):
            if index % 3 == 0 and index:
                pdf.ln(size + 8)
            if pdf.get_y() + size + 8 > pdf.h - 18:
                pdf.add_page()
            x = pdf.l_margin + (index % 3) * (size + 5)
            array = np.asarray(pixels)
            if array.dtype != np.uint8:
                raise ValueError(f"key image {uid}: pixels must be uint8 (as displayed), got {array.dtype}")
            pdf.image(Image.fromarray(array), x=x, y=pdf.get_y(), w=size, h=size, keep_aspect_ratio=True)
            pdf.set_xy(x, pdf.get_y() + size + 1)
            pdf.set_font(family, "", 6)
            pdf.cell(size, 3, uid[-28:])
            pdf.set_xy(pdf.l_margin, pdf.get_y() - size - 1)
        pdf.ln(size + 8)
    write_bytes_atomic(Path(path), bytes(pdf.output()))
    return warnings
