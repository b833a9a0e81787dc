"""`hulu-workstation report draft|send|outbox` end to end: archive, tiny model, real RIS and PACS."""

from __future__ import annotations

import io

import hl7
import pytest

from app.cli.main import main
from app.reporting.audit import ReportStore
from app.reporting.outbox import Outbox, State
from app.reporting.report import ReportStatus
from app.reporting.users import UserStore
from dicom_net.pacs_nodes import PacsNode, PacsNodes
from tests.peers import PeerUnavailable, orthanc_server
from tests.reporting.hl7_receivers import python_hl7_receiver

TEXT = "Findings: Lungs clear | no ^ nodule & ~ \\ Müller.\nHeart normal.\nImpression: Normal 中文."


@pytest.fixture(autouse=True)
def signer(monkeypatch):
    """The workstation user who signs, and their password on stdin for every command."""
    UserStore().add("boster", "Øster^Ben", "correct horse", licence="LIC-0042")
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n" * 10))


def test_draft_prints_an_unsent_ai_draft(archived_study, tiny_model_folder, capsys):
    study_uid, _ = archived_study
    code = main(
        [
            "report",
            "draft",
            "--study",
            study_uid,
            "--model",
            str(tiny_model_folder),
            "--slices",
            "4",
            "--max-new-tokens",
            "12",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("AI DRAFT - not reviewed") and "Findings:" in out
    [report] = ReportStore().reports_for_study(study_uid)
    assert report.status is ReportStatus.DRAFT and report.unreviewed_ai_spans() >= 1
    audit = ReportStore().load(report.report_id)[1]
    assert audit.generations[0].inputs[0].kind == "volume" and len(audit.generations[0].inputs[0].slices) == 4
    assert Outbox().messages() == []


def test_draft_without_a_model_explains_how_to_install(archived_study, capsys):
    study_uid, _ = archived_study
    assert main(["report", "draft", "--study", study_uid, "--model", "/nonexistent/model"]) == 2
    assert "No Hulu-Med model is installed" in capsys.readouterr().err


def test_send_final_then_correction_to_ris_and_pacs(archived_study, tmp_path, capsys):
    study_uid, paths = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    try:
        orthanc_cm = orthanc_server(tmp_path / "orthanc")
        orthanc = orthanc_cm.__enter__()
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        PacsNodes().add(PacsNode(name="pacs", aet=orthanc.aet, host=orthanc.host, port=orthanc.dicom_port))
        with python_hl7_receiver("AA") as ris:
            code = main(
                [
                    "report",
                    "send",
                    "--study",
                    study_uid,
                    "--text-file",
                    str(text_file),
                    "--status",
                    "F",
                    "--user",
                    "boster",
                    "--password-stdin",
                    "--ris",
                    ris.address,
                    "--pacs",
                    "pacs",
                ]
            )
            assert code == 0, capsys.readouterr()
            capsys.readouterr()
            send_final_again = [
                "report",
                "send",
                "--study",
                study_uid,
                "--text-file",
                str(text_file),
                "--status",
                "F",
                "--user",
                "boster",
                "--password-stdin",
                "--ris",
                ris.address,
            ]
            assert main(send_final_again) == 0  # the same signature again: nothing new is sent
            assert "already signed final" in capsys.readouterr().out and len(ris.messages) == 1
            text_file.write_text(TEXT + "\nAddendum.", encoding="utf-8")
            assert main(send_final_again) == 2  # other text as a second final
            assert "use a correction" in capsys.readouterr().err
            assert (
                main(
                    [
                        "report",
                        "send",
                        "--study",
                        study_uid,
                        "--text-file",
                        str(text_file),
                        "--status",
                        "C",
                        "--user",
                        "boster",
                        "--password-stdin",
                        "--ris",
                        ris.address,
                        "--pacs",
                        "pacs",
                    ]
                )
                == 0
            )
        messages = [hl7.parse(m) for m in ris.messages]
        assert [str(m.segment("OBR")[25]) for m in messages] == ["F", "C"]
        impression = [
            messages[1].unescape(str(s[5]))
            for s in messages[1].segments("OBX")
            if str(s[3][0][0]) == "19005-8"
        ]
        assert impression == ["Normal 中文.", "Addendum."]
        findings = [
            messages[0].unescape(str(s[5]))
            for s in messages[0].segments("OBX")
            if str(s[3][0][0]) == "59776-5"
        ]
        assert findings == ["Lungs clear | no ^ nodule & ~ \\ Müller.", "Heart normal."]
        srs = orthanc.find("Instance", {"StudyInstanceUID": study_uid, "Modality": "SR"})
        assert len(srs) == 2
        assert {m.state for m in Outbox().messages()} == {State.DELIVERED}
    finally:
        orthanc_cm.__exit__(None, None, None)


def test_send_to_a_ris_that_is_down_stays_queued(archived_study, tmp_path, capsys):
    from tests.conftest import free_port

    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Normal.", encoding="utf-8")
    port = free_port()
    assert (
        main(
            [
                "report",
                "send",
                "--study",
                study_uid,
                "--text-file",
                str(text_file),
                "--status",
                "P",
                "--user",
                "boster",
                "--password-stdin",
                "--ris",
                f"127.0.0.1:{port}",
            ]
        )
        == 3
    )
    [message] = Outbox().messages()
    assert message.state is State.PENDING and message.result_status == "P"
    with python_hl7_receiver("AA", port=port) as ris:
        assert main(["report", "outbox", "--process"]) == 0
    assert Outbox().get(message.message_id).state is State.DELIVERED
    assert ris.control_ids() == [message.message_id]
    assert "delivered" in capsys.readouterr().out


def test_outbox_command_applies_the_retention_days_from_settings(archived_study, tmp_path):
    import json
    import time

    from app.services.settings_store import SettingsStore

    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Normal.", encoding="utf-8")
    SettingsStore().apply_form({"general.outbox_retention_days": "2"})
    with python_hl7_receiver("AA") as ris:
        args = [
            "report",
            "send",
            "--study",
            study_uid,
            "--text-file",
            str(text_file),
            "--status",
            "F",
            "--user",
            "boster",
            "--password-stdin",
            "--ris",
            ris.address,
        ]
        assert main(args) == 0
    [message] = Outbox().messages()
    record = Outbox().root / f"{message.message_id}.json"
    data = json.loads(record.read_text())
    data["delivered_at"] = time.time() - 3 * 86400  # delivered three days ago
    record.write_text(json.dumps(data))
    assert main(["report", "outbox"]) == 0  # listing only: nothing processed, nothing deleted
    assert Outbox().payload_path(message.message_id).exists()
    assert main(["report", "outbox", "--process"]) == 0
    assert not Outbox().payload_path(message.message_id).exists()
    assert Outbox().get(message.message_id).state is State.DELIVERED


def test_a_wrong_password_signs_nothing_and_sends_nothing(archived_study, tmp_path, monkeypatch, capsys):
    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Normal.", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horsE\n"))
    with python_hl7_receiver("AA") as ris:
        args = ["report", "send", "--study", study_uid, "--text-file", str(text_file), "--status", "F"]
        code = main([*args, "--user", "boster", "--password-stdin", "--ris", ris.address])
        assert code == 4 and "nothing signed, nothing sent" in capsys.readouterr().err
        monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
        assert main([*args, "--user", "nobody", "--password-stdin", "--ris", ris.address]) == 4
    assert ris.messages == [] and Outbox().messages() == []
    assert ReportStore().reports_for_study(study_uid) == []


def test_the_signed_message_names_the_authenticated_user(archived_study, tmp_path):
    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Normal.", encoding="utf-8")
    with python_hl7_receiver("AA") as ris:
        args = ["report", "send", "--study", study_uid, "--text-file", str(text_file), "--status", "F"]
        assert main([*args, "--user", "boster", "--password-stdin", "--ris", ris.address]) == 0
    message = hl7.parse(ris.messages[0])
    assert str(message.segment("OBR")[32]) == "LIC-0042&Øster&Ben"
    [report] = ReportStore().reports_for_study(study_uid)
    assert report.signatures[-1].user == "boster"
    events = ReportStore().load(report.report_id)[1].events
    assert [e["user"] for e in events if e["kind"] == "signed"] == ["boster"]
