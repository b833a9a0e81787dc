"""PDF export (text read back with pypdf) and site-editable templates / quick prompts."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pypdf import PdfReader

from app.reporting.pdf import FONT_MISSING, render_pdf
from app.reporting.report import Report, StudyInfo
from app.reporting.templates import (
    TemplateError,
    best_template,
    load_templates,
    parse_markdown_template,
    quick_prompts,
    site_dir,
)


def report_with_text() -> Report:
    report = Report(
        StudyInfo(
            "1.2.3.4",
            accession_number="ACC5",
            patient_id="PID5",
            patient_name="Müller^Æsir",
            study_description="CT Thorax",
            study_datetime="20260102",
        )
    )
    report.set_text("findings", "Nodule | ^ & ~ \\ in the right upper lobe.\nZoë Ærø 中文")
    report.append_ai_text("impression", "Likely benign.")
    return report


def pdf_text(path) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)
    return re.sub(r" +", " ", text)


def test_pdf_draft_shows_banner_text_and_key_images(tmp_path):
    report = report_with_text()
    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    warnings = render_pdf(report, tmp_path / "r.pdf", key_images={"1.2.3.4.5.6": gradient})
    text = pdf_text(tmp_path / "r.pdf")
    assert "DRAFT - not signed" in text and "Müller, Æsir" in text and "ACC5" in text
    assert "Nodule | ^ & ~ \\ in the right upper lobe." in text and "Zoë Ærø" in text
    assert "Likely benign." in text and "Key images" in text
    assert warnings == ["2 distinct character(s) have no glyph in the PDF font"]  # 中文: not in DejaVu
    images = PdfReader(str(tmp_path / "r.pdf")).pages[0].images
    assert len(images) == 1 and images[0].image.size == (64, 64)


def test_signed_pdf_has_no_banner_and_names_the_radiologist(tmp_path):
    report = report_with_text()
    report.accept_ai()
    report.sign("final", "Øster, Ben")
    assert render_pdf(report, tmp_path / "r.pdf") == ["2 distinct character(s) have no glyph in the PDF font"]
    text = pdf_text(tmp_path / "r.pdf")
    assert "DRAFT" not in text and "Ben Øster" in text and "final" in text


def test_pdf_without_the_unicode_font_falls_back_with_a_message(tmp_path):
    warnings = render_pdf(report_with_text(), tmp_path / "r.pdf", font_dir=tmp_path / "no-fonts")
    assert warnings == [FONT_MISSING]
    text = pdf_text(tmp_path / "r.pdf")
    assert "fonts-dejavu-core" in text and "Müller" in text and "??" in text


def test_templates_pick_modality_and_body_part_and_site_overrides(tmp_path):
    templates = load_templates()
    assert best_template(templates, "CT", "CHEST").name == "CT chest"
    assert best_template(templates, "ct", "knee").name == "CT (any body part)"
    assert best_template(templates, "CR", "CHEST").impression == "No acute cardiopulmonary abnormality."
    assert best_template(templates, "NM", "").name == "Generic"
    site = site_dir()
    site.mkdir(parents=True)
    (site / "ct_chest.json").write_text(
        '{"name": "Site CT chest", "modality": "CT", "body_part": "CHEST", '
        '"findings": "Site text", "impression": ""}',
        encoding="utf-8",
    )
    (site / "broken.json").write_text("{not json", encoding="utf-8")
    templates = load_templates()
    assert best_template(templates, "CT", "CHEST").findings == "Site text"
    assert not any(t.name == "CT chest" for t in templates)


def test_markdown_template_needs_front_matter_and_headings():
    template = parse_markdown_template(
        "---\nname: X\nmodality: mr\n---\n## Findings\nA\nB\n## Impression\nC\n"
    )
    assert (template.modality, template.findings, template.impression) == ("MR", "A\nB", "C")
    with pytest.raises(TemplateError, match="front matter"):
        parse_markdown_template("## Findings\nA")
    with pytest.raises(TemplateError, match="before the first"):
        parse_markdown_template("---\nname: X\n---\nstray\n## Findings\nA")


def test_quick_prompts_are_per_modality_then_generic():
    prompts = quick_prompts("CR")
    assert prompts[0] == "Is this chest radiograph normal?"
    assert "Describe what is shown on this image." in prompts
    assert quick_prompts("") == quick_prompts("ZZ")
