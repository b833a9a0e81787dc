"""Sign-off a hospital can defend: only an authenticated user signs, AI-written text is named in
every export, nothing is signed that the exports would refuse, and the RIS never gets a
correction for a final it never received."""

from __future__ import annotations

import io
import json
import stat
import subprocess
from dataclasses import replace

import hl7
import numpy as np
import pytest
from hl7apy.parser import parse_message
from pydicom import dcmread
from pypdf import PdfReader

from app.cli.main import main
from app.reporting.audit import AuditRecord, Generation, ReportStore
from app.reporting.dicom_sr import build_report_sr
from app.reporting.export import queue_report_to_ris
from app.reporting.hl7_oru import OruR01
from app.reporting.mllp import MllpEndpoint, send_message
from app.reporting.outbox import Outbox
from app.reporting.pdf import pdf_file_name, render_pdf
from app.reporting.report import Report, ReportError, ReportStatus, Span, StudyInfo
from app.reporting.users import AuthenticationError, UserError, UserStore
from app.reporting.workflow import ReportWorkflow
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.reporting.hl7_receivers import hl7apy_receiver, python_hl7_receiver

STUDY = StudyInfo(
    study_instance_uid="1.2.826.0.1.3680043.8.498.4711",
    accession_number="ACC-SO",
    patient_id="PID-SO",
    patient_name="Ærø^Zoë",
    patient_birth_date="19650412",
    patient_sex="F",
    modality="CT",
    study_datetime="20260105093000",
)
MODEL = ("Hulu-Med-7B (hulumed_qwen2)", "sha256:" + "ab" * 32)


def ai_audit(report: Report) -> AuditRecord:
    audit = AuditRecord(report.report_id, report.study.study_instance_uid)
    audit.generations.append(
        Generation("draft", MODEL[0], MODEL[1], "p", {}, [], "t0", "t1", "completed", 20, 5, 5)
    )
    return audit


@pytest.fixture
def users() -> UserStore:
    store = UserStore()
    store.add("boster", "Øster^Ben", "correct horse", licence="LIC-0042")
    return store


# -- identity ----------------------------------------------------------------------------------


def test_passwords_are_stored_only_as_salted_scrypt_hashes_in_an_owner_only_file(users):
    raw = users.path.read_text()
    assert "correct horse" not in raw
    record = json.loads(raw)["users"]["boster"]
    assert record["hash"].startswith("scrypt$") and record["family"] == "Øster"
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    user = users.authenticate("boster", "correct horse")
    assert (user.xcn_name, user.licence) == ("Øster^Ben", "LIC-0042")
    with pytest.raises(AuthenticationError):
        users.authenticate("boster", "correct horsE")
    with pytest.raises(AuthenticationError):
        users.authenticate("nobody", "correct horse")
    users.add("other", "Kim^Lee", "correct horse")
    assert json.loads(users.path.read_text())["users"]["other"]["hash"] != record["hash"]  # salted
    with pytest.raises(UserError, match="Family"):
        users.add("bad", "^Given", "1234")
    with pytest.raises(UserError, match="already exists"):
        users.add("boster", "X^Y", "1234")


def test_five_wrong_passwords_make_that_login_wait_and_a_new_password_ends_it(users):
    users.add("kim", "Kim^Lee", "other secret")
    for _ in range(5):
        with pytest.raises(AuthenticationError, match="wrong password"):
            users.authenticate("boster", "guess", now=1000.0)
    with pytest.raises(AuthenticationError, match="too many wrong passwords.*5 min"):
        users.authenticate("boster", "correct horse", now=1001.0)  # even the right one
    assert users.authenticate("kim", "other secret", now=1001.0).login == "kim"  # others unaffected
    assert users.authenticate("boster", "correct horse", now=1000.0 + 301).login == "boster"
    for _ in range(4):  # the count starts again after a success
        with pytest.raises(AuthenticationError, match="wrong password"):
            users.authenticate("boster", "guess", now=2000.0)
    assert users.authenticate("boster", "correct horse", now=2000.0).login == "boster"
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            users.authenticate("boster", "guess", now=3000.0)
    users.set_password("boster", "new horse")
    assert users.authenticate("boster", "new horse", now=3001.0).login == "boster"


def test_users_command_line_add_list_passwd_remove(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pin\n"))
    assert main(["users", "add", "kim", "--name", "Kim^Lee", "--licence", "99", "--password-stdin"]) == 0
    assert main(["users", "list"]) == 0
    assert "kim\tKim^Lee\tlicence 99" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("new-pin-1\n"))
    assert main(["users", "passwd", "kim", "--password-stdin"]) == 0
    UserStore().authenticate("kim", "new-pin-1")
    with pytest.raises(AuthenticationError):
        UserStore().authenticate("kim", "s3cret-pin")
    monkeypatch.setattr("sys.stdin", io.StringIO("12\n"))
    assert main(["users", "add", "short", "--name", "A^B", "--password-stdin"]) == 2
    assert "at least 4" in capsys.readouterr().err
    assert main(["users", "remove", "kim"]) == 0
    assert UserStore().list() == []


def test_workflow_signs_only_with_the_users_password_and_names_them_everywhere(users, tmp_path):
    workflow = ReportWorkflow(ReportStore(), Outbox(tmp_path / "outbox"), users=users)
    report = workflow.open_study(replace(STUDY))
    report.set_text("findings", "Normal.")
    with pytest.raises(AuthenticationError):
        workflow.sign("final", "boster", "wrong password")
    assert report.status is ReportStatus.DRAFT and report.signatures == []
    assert workflow.audit.events[-1]["kind"] == "signing refused"
    workflow.sign("final", "boster", "correct horse", for_ris=True)
    signature = report.signatures[-1]
    assert (signature.radiologist, signature.user, signature.licence) == ("Øster^Ben", "boster", "LIC-0042")
    event = workflow.audit.events[-1]
    assert (event["kind"], event["user"], event["licence"]) == ("signed", "boster", "LIC-0042")
    msg = hl7.parse(OruR01(report, control_id="C1").to_er7())
    assert str(msg.segment("OBR")[32]) == "LIC-0042&Øster&Ben"
    assert str(msg.segment("OBX")[16]) == "LIC-0042^Øster^Ben"


# -- never a signed report that cannot be sent -------------------------------------------------


def test_signing_runs_the_export_checks_and_says_what_to_fix(users, tmp_path):
    workflow = ReportWorkflow(ReportStore(), Outbox(tmp_path / "outbox"), users=users)
    report = workflow.open_study(replace(STUDY))
    report.sections["findings"] = [Span("Lungs clear.\nHeart\x0bnormal.")]  # a record from before cleaning
    with pytest.raises(ReportError, match=r"Findings line 2: control character '\\x0b'.*Delete"):
        workflow.sign("final", "boster", "correct horse")
    assert report.status is ReportStatus.DRAFT and not report.signatures
    report.set_text("findings", "Lungs clear.\nHeart normal.")
    report.study.accession_number = ""
    with pytest.raises(ReportError, match="OBR-18 accession number"):
        workflow.sign("final", "boster", "correct horse", for_ris=True)
    assert report.status is ReportStatus.DRAFT


def test_a_correction_is_sent_as_the_first_final_when_the_ris_never_got_one(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    report = Report(replace(STUDY))
    report.set_text("findings", "Normal.")
    report.sign("final", "Øster^Ben")  # the F was never queued (e.g. the RIS refused to build it)
    report.open_amendment()
    report.set_text("findings", "Normal. Rib fracture.")
    report.sign("corrected", "Øster^Ben")
    audit = AuditRecord(report.report_id, report.study.study_instance_uid)
    first = queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    assert first.result_status == "F"
    assert (
        str(hl7.parse(outbox.payload_path(first.message_id).read_bytes().decode()).segment("OBR")[25]) == "F"
    )
    report.open_amendment()
    report.set_text("findings", "Normal. Two rib fractures.")
    report.sign("corrected", "Øster^Ben")
    second = queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    assert second.result_status == "C"  # the F is on its way (pending) or delivered: now a correction
    other = queue_report_to_ris(report, audit, outbox, "127.0.0.1:2576")
    assert other.result_status == "F"  # another RIS never got a final either


# -- what the AI wrote is named in every export ------------------------------------------------


def ai_report(keep_ai: bool) -> tuple[Report, AuditRecord]:
    report = Report(replace(STUDY))
    report.set_text("findings", "Clinical question: cough.")
    if keep_ai:
        report.append_ai_text("findings", "Lungs clear.")
        report.accept_ai()
    report.set_text("impression", "No acute finding.")
    report.sign("final", "Øster^Ben", user="boster", licence="LIC-0042")
    return report, ai_audit(report)


@pytest.mark.parametrize(
    "receiver_factory", [python_hl7_receiver, hl7apy_receiver], ids=["python-hl7", "hl7apy"]
)
def test_oru_names_the_model_when_ai_text_was_kept_and_receivers_parse_it(receiver_factory):
    report, audit = ai_report(keep_ai=True)
    oru = OruR01(report, control_id="AI1", ai_models=audit.ai_models())
    with receiver_factory("AA") as receiver:
        ack = send_message(MllpEndpoint.parse(receiver.address), oru.encode(), timeout=10)
    assert ack.code == "AA"
    msg = hl7.parse(receiver.messages[0])
    [nte] = msg.segments("NTE")
    note = msg.unescape(str(nte[3]))
    assert MODEL[0] in note and MODEL[1] in note and "AI-generated" in note
    methods = {msg.unescape(str(s[5])): str(s[17]) if len(s) > 17 else "" for s in msg.segments("OBX")[1:]}
    assert methods["Lungs clear."].startswith("HULU-AI^") and MODEL[1] in methods["Lungs clear."]
    assert methods["Clinical question: cough."] == "" and methods["No acute finding."] == ""
    parsed = parse_message(receiver.messages[0].replace("\n", "\r"), find_groups=False)
    assert [s.name for s in parsed.children].count("NTE") == 1


def test_a_report_without_ai_text_carries_no_ai_mark(tmp_path):
    report, audit = ai_report(keep_ai=False)
    er7 = OruR01(report, control_id="NOAI", ai_models=audit.ai_models()).to_er7()
    assert "NTE" not in er7 and "HULU-AI" not in er7
    render_pdf(report, tmp_path / "r.pdf", ai_models=audit.ai_models())
    assert "AI-generated" not in PdfReader(str(tmp_path / "r.pdf")).pages[0].extract_text()


def _sr_items(dataset, found):
    for item in dataset.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0]
        found.append((name.CodeValue, str(item.get("TextValue", ""))))
        _sr_items(item, found)
    return found


def test_sr_has_tid_4019_algorithm_identification_only_when_ai_text_was_kept(tmp_path):
    datasets = list(
        ct_series(
            SeriesGeometry(rows=16, columns=16, slices=2), patient={"id": "PID-SO", "accession": "ACC-SO"}
        )
    )
    write_datasets(datasets, tmp_path / "ct")
    for keep in (True, False):
        report, audit = ai_report(keep_ai=keep)
        report.study = StudyInfo.from_dataset(datasets[0])
        sr = build_report_sr(report, datasets[:1], ai_models=audit.ai_models())
        items = _sr_items(sr, [])
        algorithm = [(c, v) for c, v in items if c in ("111001", "111003")]
        assert algorithm == ([("111001", MODEL[0]), ("111003", MODEL[1])] if keep else [])
        path = tmp_path / f"sr-{keep}.dcm"
        sr.save_as(path, enforce_file_format=True)
        dump = subprocess.run(["dsrdump", "-Ee", str(path)], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0 and "error" not in dump.stderr.lower(), dump.stderr
        assert ('has concept mod TEXT:(,,"Algorithm Version")' in dump.stdout) is keep
        assert subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, timeout=30).returncode == 0
        assert dcmread(path).VerifyingObserverSequence[0].VerifyingObserverIdentificationCodeSequence[
            0
        ].CodeValue == ("LIC-0042")


def test_pdf_dates_ai_footer_signer_key_images_and_file_name(tmp_path):
    report, audit = ai_report(keep_ai=True)
    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    render_pdf(report, tmp_path / "r.pdf", key_images={"k1": gradient}, ai_models=audit.ai_models())
    page = PdfReader(str(tmp_path / "r.pdf")).pages[0]
    text = page.extract_text()
    assert "1965-04-12" in text and "19650412" not in text and "2026-01-05 09:30" in text
    assert "AI-generated" in text and MODEL[0] in text
    assert "LIC-0042" in text and len(page.images) == 1
    assert pdf_file_name(report) == "report_ACC-SO_CT_2026-01-05_final_v1.pdf"


# -- key images come back with the report ------------------------------------------------------


def test_key_images_are_kept_with_the_report_and_come_back_on_reopening(tmp_path, users):
    store = ReportStore()
    workflow = ReportWorkflow(store, Outbox(tmp_path / "outbox"), users=users)
    workflow.open_study(replace(STUDY))
    pixels = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    workflow.add_key_image(None, pixels, "coronal 12 (reformat)")
    again = ReportWorkflow(store, Outbox(tmp_path / "outbox"), users=users)
    again.open_study(replace(STUDY))
    assert again.key_labels == {"coronal 12 (reformat)": "coronal 12 (reformat)"}
    assert np.array_equal(again.key_pixels["coronal 12 (reformat)"], pixels)
    again.export_pdf(tmp_path / "again.pdf")
    assert len(PdfReader(str(tmp_path / "again.pdf")).pages[0].images) == 1
