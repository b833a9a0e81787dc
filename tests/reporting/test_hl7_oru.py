"""The ORU^R01 built for a signed report, delivered over MLLP to real receivers and parsed back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hl7
import pytest
from hl7apy.parser import parse_message

from app.reporting.hl7_oru import Hl7ValueError, OruR01, escape_text
from app.reporting.mllp import MllpEndpoint, send_message
from app.reporting.report import Report, Span, StudyInfo
from tests.reporting.hl7_receivers import hl7apy_receiver, python_hl7_receiver

NASTY_FINDINGS = (
    "Pipe | caret ^ amp & tilde ~ backslash \\ end\nMüller, Æsir, 中文 \\E\\ literal\n\n  indented line"
)
NASTY_IMPRESSION = "No acute finding.\nFollow-up: 3 months ~ 6 months"
STUDY_UID = "1.2.826.0.1.3680043.8.498.12345"


def signed_report(status: str = "final") -> Report:
    study = StudyInfo(
        study_instance_uid=STUDY_UID,
        accession_number="ACC-77|X",
        patient_id="MRN^001",
        issuer_of_patient_id="HOSP",
        patient_name="Müller^Ærna^J",
        patient_birth_date="19700102",
        patient_sex="F",
        modality="CT",
        study_description="CT Thorax & Abdomen",
        study_datetime="20260101081500",
        placer_order_number="PL1",
        filler_order_number="FI1",
    )
    report = Report(study)
    report.set_text("findings", NASTY_FINDINGS)
    report.set_text("impression", NASTY_IMPRESSION)
    report.sign(status, "Øster, Ben", at=datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    return report


def section_text(message: hl7.Message, loinc: str) -> str:
    lines = [message.unescape(str(seg[5])) for seg in message.segments("OBX") if str(seg[3][0][0]) == loinc]
    return "\n".join(lines)


def test_escape_order_backslash_first():
    assert escape_text("\\F\\|") == "\\E\\F\\E\\\\F\\"
    with pytest.raises(Hl7ValueError, match="OBX-5"):
        escape_text("a\nb", "OBX-5")


@pytest.mark.parametrize(
    "receiver_factory", [python_hl7_receiver, hl7apy_receiver], ids=["python-hl7", "hl7apy"]
)
def test_oru_round_trips_every_field_through_a_real_receiver(receiver_factory):
    report = signed_report()
    oru = OruR01(report, control_id="CTRL0001", receiving_application="RIS")
    with receiver_factory("AA") as receiver:
        ack = send_message(MllpEndpoint.parse(receiver.address), oru.encode(), timeout=10)
    assert ack.code == "AA" and ack.control_id == "CTRL0001"
    assert len(receiver.messages) == 1
    msg = hl7.parse(receiver.messages[0])
    msh, pid, obr = msg.segment("MSH"), msg.segment("PID"), msg.segment("OBR")
    assert str(msh[9]) == "ORU^R01^ORU_R01" and str(msh[10]) == "CTRL0001"
    assert str(msh[12]) == "2.5.1" and str(msh[18]) == "UNICODE UTF-8"
    assert msg.unescape(str(pid[3][0][0])) == "MRN^001" and str(pid[3][0][3]) == "HOSP"
    assert [str(pid[5][0][i]) for i in range(3)] == ["Müller", "Ærna", "J"]
    assert str(pid[7]) == "19700102" and str(pid[8]) == "F"
    assert msg.unescape(str(obr[18])) == "ACC-77|X"
    assert str(obr[25]) == "F" and str(obr[22]) == "20260101093000+0100" and str(obr[7]) == "20260101081500"
    assert str(obr[24]) == "RAD"
    assert msg.unescape(str(obr[4][0][1])) == "CT Thorax & Abdomen"
    assert str(obr[32][0][0]) == "&Øster&Ben"
    obx = msg.segments("OBX")
    assert [str(s[1]) for s in obx] == [str(i) for i in range(1, len(obx) + 1)]
    assert {str(s[11]) for s in obx} == {"F"}
    uid_obx = [s for s in obx if str(s[3]) == "113014^DICOM Study^DCM"]
    assert len(uid_obx) == 1 and str(uid_obx[0][2]) == "HD" and str(uid_obx[0][5]) == STUDY_UID
    assert section_text(msg, "59776-5") == NASTY_FINDINGS
    assert section_text(msg, "19005-8") == NASTY_IMPRESSION
    assert {str(s[2]) for s in obx if str(s[3]) != "113014^DICOM Study^DCM"} == {"TX"}


def test_hl7apy_parses_the_message_with_the_same_values():
    report = signed_report("preliminary")
    er7 = OruR01(report, control_id="C2").to_er7()
    msg = parse_message(er7, find_groups=False)
    assert msg.msh.msh_10.to_er7() == "C2"
    obr = [s for s in msg.children if s.name == "OBR"][0]
    assert obr.obr_25.to_er7() == "P" and obr.obr_18.to_er7() == "ACC-77\\F\\X"
    obx = [s for s in msg.children if s.name == "OBX"]
    assert {o.obx_11.to_er7() for o in obx} == {"P"}
    assert obx[1].obx_5.to_er7() == "Pipe \\F\\ caret \\S\\ amp \\T\\ tilde \\R\\ backslash \\E\\ end"


def test_unnamed_preliminary_leaves_the_interpreter_fields_empty():
    info = StudyInfo(study_instance_uid=STUDY_UID, patient_id="P", accession_number="A", modality="CT")
    report = Report(info)
    report.set_text("findings", "x")
    report.sign("preliminary")
    msg = hl7.parse(OruR01(report, control_id="C9").to_er7())
    assert str(msg.segment("OBR")[32]) == "" and str(msg.segment("OBX")[16]) == ""
    assert str(msg.segment("OBR")[4]) == "CT^CT^L"


def test_builder_refuses_bad_input_naming_the_field():
    report = Report(
        StudyInfo(study_instance_uid=STUDY_UID, patient_id="P", accession_number="A", modality="CT")
    )
    report.set_text("findings", "x")
    with pytest.raises(Hl7ValueError, match="OBR-25.*draft"):
        OruR01(report, control_id="C1")
    report.sign("final", "Dr A")
    for bad_id in ("", "X" * 21, "a|b", "ctrl-1"):
        with pytest.raises(Hl7ValueError, match="MSH-10"):
            OruR01(report, control_id=bad_id)
    report.study.accession_number = ""
    with pytest.raises(Hl7ValueError, match="OBR-18"):
        OruR01(report, control_id="C1")
    report.study.accession_number = "A"
    report.study.patient_id = ""
    with pytest.raises(Hl7ValueError, match="PID-3"):
        OruR01(report, control_id="C1")
    report.study.patient_id = "P"
    report.study.study_instance_uid = "1.2.03"
    with pytest.raises(Hl7ValueError, match="Study Instance UID"):
        OruR01(report, control_id="C1")
    report.study.study_instance_uid = STUDY_UID
    report.study.patient_birth_date = "1970-01-01"
    with pytest.raises(Hl7ValueError, match="PID-7"):
        OruR01(report, control_id="C1")
    report.study.patient_birth_date = ""
    report.open_amendment()
    report.set_text("findings", "bell\x07")
    assert report.text("findings") == "bell"  # cleaned where it enters
    with pytest.raises(Hl7ValueError, match="OBR-25.*amendment"):
        OruR01(report, control_id="C1")
    report.sign("corrected", "Dr A")
    report.sections["findings"] = [Span("bell\x07")]  # a record saved before text was cleaned
    with pytest.raises(Hl7ValueError, match="OBX-5.*control character"):
        OruR01(report, control_id="C1")
