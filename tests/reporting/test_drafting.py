"""Drafting a report with the (tiny, random) local model: streamed, AI-marked, audited, never sent."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.assistant.drafting import DraftError, DraftSettings, draft_report, split_draft
from app.assistant.model_service import ModelService
from app.reporting.audit import AuditRecord, SentInput
from app.reporting.outbox import Outbox
from app.reporting.report import Report, ReportError, StudyInfo
from inference.frames import volume_item

ANSWER = "Findings: The liver is normal.\nNo pleural effusion. Impression: No acute abnormality."


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_answer_is_split_into_sections_without_retraction(chunk):
    seen = {"findings": "", "impression": ""}
    for end in range(chunk, len(ANSWER) + chunk, chunk):
        parts = split_draft(ANSWER[:end], final=False)
        for key, text in parts.items():
            assert text.startswith(seen[key].rstrip()) or not seen[key], (key, text, seen[key])
            assert "Impr" not in text and "Findings" not in text
            seen[key] = text
    assert split_draft(ANSWER) == {
        "findings": "The liver is normal.\nNo pleural effusion.",
        "impression": "No acute abnormality.",
    }


def test_reasoning_never_enters_the_report():
    assert split_draft("<think>Findings: guess", final=False) == {"findings": "", "impression": ""}
    assert split_draft("<think>maybe</think>**Findings:** A\n**Impression:** B") == {
        "findings": "A",
        "impression": "B",
    }


def study_visuals():
    volume = np.random.default_rng(1).integers(-1000, 1000, (12, 48, 48)).astype(np.int16)
    item = volume_item(volume, slices=4, window=(400, 40))
    sent = SentInput("1.2.3.9", "volume", "axial", list(item.sampled_indices), 40.0, 400.0, 4)
    return item, sent


def test_draft_streams_ai_marked_text_fills_the_audit_and_sends_nothing(tiny_model_service):
    report = Report(StudyInfo("1.2.3.4", accession_number="A", patient_id="P"))
    report.set_text("findings", "Clinical question: cough.")
    audit = AuditRecord(report.report_id, "1.2.3.4")
    updates = []
    item, sent = study_visuals()
    generation = draft_report(
        tiny_model_service,
        report,
        audit,
        [item],
        [sent],
        settings=DraftSettings(max_new_tokens=24, max_visual_tokens=256),
        on_update=lambda: updates.append(report.text("findings")),
    )
    assert generation.outcome == "completed" and generation.new_tokens == 24
    assert len(updates) >= 2 and generation.output_chars > 0
    spans = report.spans("findings")
    assert spans[0].text == "Clinical question: cough.\n" and not spans[0].ai
    assert all(s.ai for s in spans[1:]) and report.unreviewed_ai_spans() >= 1
    assert audit.generations == [generation]
    assert generation.model_checksum.startswith("sha256:") and generation.prompt.startswith("You are")
    assert generation.inputs[0].slices == item.sampled_indices and generation.prompt_tokens > 16
    assert Outbox().messages() == []
    with pytest.raises(ReportError, match="AI-written"):
        report.sign("final", "Dr A")


def test_draft_can_be_cancelled(tiny_model_service):
    report = Report(StudyInfo("1.2.3.5"))
    audit = AuditRecord(report.report_id, "1.2.3.5")
    cancel = threading.Event()
    item, sent = study_visuals()
    generation = draft_report(
        tiny_model_service,
        report,
        audit,
        [item],
        [sent],
        settings=DraftSettings(max_new_tokens=200, max_visual_tokens=256),
        on_update=cancel.set,
        cancel=cancel,
    )
    assert generation.outcome == "cancelled" and generation.new_tokens < 200


def test_no_model_says_how_to_install_and_signed_reports_are_not_redrafted(tmp_path, tiny_model_service):
    absent = ModelService(None)
    assert absent.state.kind == "absent" and "Settings > Model" in absent.state.message
    report = Report(StudyInfo("1.2.3.6"))
    item, sent = study_visuals()
    with pytest.raises(DraftError, match="No Hulu-Med model"):
        draft_report(absent, report, AuditRecord(report.report_id, "1"), [item], [sent])
    report.set_text("findings", "Normal.")
    report.sign("final", "Dr A")
    with pytest.raises(ReportError, match="only a draft"):
        draft_report(tiny_model_service, report, AuditRecord(report.report_id, "1"), [item], [sent])


def test_a_template_that_pre_opens_think_keeps_the_reasoning_out_of_the_report() -> None:
    reasoning_then_report = "The lungs look clear.\n</think>\n**Findings:** A\n**Impression:** B"
    assert split_draft(reasoning_then_report, think_open=True) == {"findings": "A", "impression": "B"}
    assert split_draft("The lungs look", final=False, think_open=True) == {"findings": "", "impression": ""}
