"""The report's status machine and AI marks: what the rules allow and refuse."""

from __future__ import annotations

import pytest

from app.reporting.audit import AuditRecord, Generation, ReportStore, SentInput
from app.reporting.report import Report, ReportError, ReportStatus, Span, StudyInfo, clean_text


def make_report() -> Report:
    return Report(StudyInfo(study_instance_uid="1.2.3.4", accession_number="ACC1", patient_id="P1"))


def test_report_needs_a_study_uid():
    with pytest.raises(ReportError, match="StudyInstanceUID"):
        Report(StudyInfo(study_instance_uid=""))


def test_ai_text_is_marked_and_signing_refused_until_reviewed():
    report = make_report()
    for piece in ["Liver norm", "al.\nNo effusion", ".\n"]:
        report.append_ai_text("findings", piece)
    assert report.text("findings") == "Liver normal.\nNo effusion.\n"
    assert [(s.text, s.ai) for s in report.spans("findings")] == [("Liver normal.\nNo effusion.\n", True)]
    report.append_ai_text("impression", "Normal.")
    with pytest.raises(ReportError, match="2 AI-written passage"):
        report.sign("final", "Müller, Anna")
    assert report.status is ReportStatus.DRAFT


def test_ai_text_after_the_radiologists_starts_on_a_new_line():
    report = make_report()
    report.set_text("findings", "Question: cough.")
    report.append_ai_text("findings", "Lungs clear.")
    assert [(s.text, s.ai) for s in report.spans("findings")] == [
        ("Question: cough.\n", False),
        ("Lungs clear.", True),
    ]


def test_editing_one_ai_line_unmarks_only_the_typed_characters():
    report = make_report()
    report.append_ai_text("findings", "Liver normal.\nNo effusion.\n")
    report.set_text("findings", "Liver normal.\nSmall left effusion.\nBones intact.")
    spans = report.spans("findings")
    assert "".join(s.text for s in spans if s.ai) == "Liver normal.\n effusion.\n"
    assert "".join(s.text for s in spans if not s.ai) == "Small leftBones intact."
    assert report.unreviewed_ai_spans() == 2
    # a pure insertion between two lines leaves both AI lines marked
    report2 = make_report()
    report2.append_ai_text("impression", "A.\nB.\n")
    report2.set_text("impression", "A.\nMine.\nB.\n")
    assert [(s.text, s.ai) for s in report2.spans("impression")] == [
        ("A.\n", True),
        ("Mine.\n", False),
        ("B.\n", True),
    ]


def test_accept_unmarks_and_then_final_needs_a_named_radiologist():
    report = make_report()
    report.append_ai_text("impression", "No acute findings.")
    assert report.accept_ai("impression") == 1
    assert report.spans("impression") == [Span("No acute findings.", False, kept_ai=True)]
    with pytest.raises(ReportError, match="named radiologist"):
        report.sign("final", "  ")
    report.sign("final", "Müller, Anna")
    assert report.status is ReportStatus.FINAL and report.radiologist == "Müller, Anna"


def test_illegal_transitions_are_refused():
    report = make_report()
    report.set_text("findings", "Normal.")
    with pytest.raises(ReportError, match="illegal transition draft -> corrected"):
        report.sign("corrected", "Dr A")
    report.sign("preliminary")
    with pytest.raises(ReportError, match="illegal transition preliminary -> preliminary"):
        report.sign("preliminary")
    report.sign("final", "Dr A")
    with pytest.raises(ReportError, match="illegal transition final -> final"):
        report.sign("final", "Dr A")
    with pytest.raises(ReportError, match="needs an open amendment"):
        report.sign("corrected", "Dr A")


def test_final_is_locked_and_corrected_only_through_an_amendment():
    report = make_report()
    report.set_text("findings", "Normal.")
    with pytest.raises(ReportError, match="only a final report can be amended"):
        report.open_amendment()
    report.sign("final", "Dr A")
    with pytest.raises(ReportError, match="locked"):
        report.set_text("findings", "Changed.")
    with pytest.raises(ReportError, match="locked"):
        report.append_ai_text("findings", "AI.")
    report.open_amendment()
    assert report.version == 2
    report.set_text("findings", "Normal. Addendum: rib fracture.")
    report.sign("corrected", "Dr B")
    assert report.status is ReportStatus.CORRECTED
    assert [s.status for s in report.signatures] == [ReportStatus.FINAL, ReportStatus.CORRECTED]
    assert not report.editable


def test_empty_report_cannot_be_signed_and_draft_has_no_hl7_status():
    report = make_report()
    with pytest.raises(ReportError, match="empty"):
        report.sign("preliminary")
    with pytest.raises(ReportError, match="cannot be sent"):
        _ = ReportStatus.DRAFT.hl7_code


def test_report_and_audit_round_trip_through_the_store(tmp_path):
    report = make_report()
    report.append_ai_text("findings", "Línea 1 | ^ & ~ \\\nLine 2")
    audit = AuditRecord(report.report_id, "1.2.3.4")
    audit.generations.append(
        Generation(
            purpose="draft",
            model_id="tiny",
            model_checksum="abc",
            prompt="p",
            settings={"max_new_tokens": 8},
            inputs=[SentInput("1.2.3.5", "volume", "axial", [0, 5], 40.0, 400.0, 2)],
            started_at="t0",
        )
    )
    audit.add_event("signed", radiologist="Dr A")
    store = ReportStore(tmp_path)
    store.save(report, audit)
    loaded, loaded_audit = store.load(report.report_id)
    assert loaded.to_dict() == report.to_dict()
    assert loaded_audit.to_dict() == audit.to_dict()
    assert [r.report_id for r in store.reports_for_study("1.2.3.4")] == [report.report_id]
    assert not list(tmp_path.rglob("*.tmp"))


def test_random_edits_keep_the_text_exactly_and_never_mark_typed_text_as_ai():
    import random

    rng = random.Random(7)
    alphabet = "ab \n|^&~\\üÆ中\x1c"
    report = make_report()
    report.append_ai_text("findings", "Line one.\nLine two.\nLine three.\n")
    for _ in range(200):
        text = report.text("findings")
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        typed = "".join(rng.choice(alphabet) for _ in range(rng.randrange(4)))
        new = clean_text(text[:i] + typed + text[j:])  # \x1c becomes a line break
        ai_before = "".join(s.text for s in report.spans("findings") if s.ai)
        report.set_text("findings", new)
        spans = report.spans("findings")
        assert "".join(s.text for s in spans) == new
        ai_after = "".join(s.text for s in spans if s.ai)
        assert len(ai_after) <= len(ai_before)  # edits only ever unmark
        if rng.random() < 0.2:
            report.append_ai_text("findings", "More AI.\n")


def test_a_preliminary_edited_after_signing_is_not_sent_until_signed_again(tmp_path):
    from app.reporting.export import queue_report_to_ris
    from app.reporting.outbox import Outbox

    outbox = Outbox(tmp_path / "outbox")
    report = Report(
        StudyInfo(study_instance_uid="1.2.3.4", accession_number="ACC1", patient_id="P1", modality="CT")
    )
    report.set_text("findings", "No nodule.")
    report.sign("preliminary", "Dr A")
    assert not report.edited_since_signed
    report.set_text("findings", "Nodule 8 mm right upper lobe.")  # preliminary stays editable
    assert report.edited_since_signed
    audit = AuditRecord(report.report_id, "1.2.3.4")
    with pytest.raises(ReportError, match="changed after it was signed preliminary"):
        queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    assert outbox.messages() == []
    reloaded = Report.from_dict(report.to_dict())  # the signed content survives a restart
    assert reloaded.edited_since_signed
    report.sign("preliminary", "Dr A")  # re-signing the changed preliminary is allowed
    assert len(report.signatures) == 2 and not report.edited_since_signed
    message = queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    assert b"Nodule 8 mm right upper lobe." in outbox.payload_path(message.message_id).read_bytes()


def test_records_signed_before_content_digests_stay_sendable():
    report = make_report()
    report.set_text("findings", "Normal.")
    report.sign("final", "Dr A")
    data = report.to_dict()
    del data["signatures"][0]["content"]
    old = Report.from_dict(data)
    assert old.signatures[0].content == "" and not old.edited_since_signed


LONG_AI = (
    "The liver is normal in size and attenuation without a focal lesion. The gallbladder is "
    "unremarkable. The pancreas, spleen and adrenal glands are normal. No free fluid."
)


def test_typing_inside_a_long_ai_passage_unmarks_only_what_was_typed():
    report = make_report()
    report.append_ai_text("findings", LONG_AI)
    at = LONG_AI.index("without")
    report.set_text("findings", LONG_AI[:at] + "(checked) " + LONG_AI[at:])  # 10 characters typed
    spans = report.spans("findings")
    [typed] = [s.text for s in spans if not s.ai]
    assert typed.strip() == "(checked)" and len(typed) == 10
    assert "".join(s.text for s in spans if s.ai) == LONG_AI  # every untouched AI character stays marked
    assert report.unreviewed_ai_spans() == 2
    with pytest.raises(ReportError, match="2 AI-written passage"):
        report.sign("final", "Dr A")
    # overtyping one word inside it: the rest stays AI
    report.set_text("findings", report.text("findings").replace("gallbladder", "gall bladder"))
    assert "gallbladder".replace("ll", "ll ") not in "".join(s.text for s in report.spans("findings") if s.ai)
    assert "The pancreas, spleen" in "".join(s.text for s in report.spans("findings") if s.ai)


def test_accepted_ai_text_stays_known_as_ai_written_until_retyped():
    report = make_report()
    report.set_text("impression", "Mine.")
    assert not report.contains_ai_text
    report.append_ai_text("findings", "Line A.\nLine B.")
    assert report.accept_ai() == 1 and report.unreviewed_ai_spans() == 0
    assert report.contains_ai_text and report.ai_lines("findings") == [True, True]
    report.set_text("findings", "Line A.\nTyped.")
    assert report.ai_lines("findings") == [True, False]
    reloaded = Report.from_dict(report.to_dict())
    assert reloaded.ai_lines("findings") == [True, False] and reloaded.contains_ai_text
    report.set_text("findings", "Typed.")
    assert not report.contains_ai_text


@pytest.mark.parametrize("entry", ["ai_stream", "edit", "template"])
def test_control_characters_are_cleaned_where_text_enters(entry):
    report = make_report()
    dirty = "Lungs clear.\x0bHeart normal.\x0c\x01End\u2028x\tTab"
    if entry == "ai_stream":
        report.set_ai_text("findings", [], dirty)
    elif entry == "edit":
        report.set_text("findings", dirty)
    else:
        report.replace_with_template("findings", dirty)
    assert report.text("findings") == "Lungs clear.\nHeart normal.\nEnd\nx\tTab"
