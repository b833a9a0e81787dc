"""The report editor end to end: AI draft marked, edit/accept, sign, key image, RIS, PDF; and the
chat + report panels mounted in the real main window, following the active viewport."""

from __future__ import annotations

from pathlib import Path

import hl7
import pytest
from pypdf import PdfReader
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox

from app.assistant.chat import ScreenContext
from app.assistant.drafting import DraftSettings
from app.gui.report_editor import ReportEditor
from app.reporting.audit import AuditRecord, ReportStore
from app.reporting.outbox import Outbox
from app.reporting.report import Report, ReportStatus, StudyInfo
from app.reporting.workflow import ReportWorkflow
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.reporting.hl7_receivers import python_hl7_receiver
from tests.reporting.model_fixtures import *
from viewer.loader import load_volume


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory):
    datasets = list(
        ct_series(
            SeriesGeometry(rows=40, columns=40, slices=10),
            patient={"id": "ED-PID", "accession": "ED-ACC", "name": "Zoë^Ærø"},
        )
    )
    paths = write_datasets(datasets, tmp_path_factory.mktemp("editor-ct"))
    volume, _ = load_volume(paths)
    context = ScreenContext(
        datasets[0].StudyInstanceUID,
        datasets[0].SeriesInstanceUID,
        volume,
        modality="CT",
        series_label="Phantom",
        plane="axial",
        slice_index=4,
        window=(400.0, 40.0),
    )
    return datasets, paths, context


PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def signer():
    """The workstation user who signs in these tests."""
    from app.reporting.users import UserStore

    return UserStore().add("boster", "Øster^Ben", PASSWORD, licence="LIC-0042")


def sign_as(editor, status, login="boster", password=PASSWORD) -> bool:
    """Press a sign button's action and answer the password dialog it opens on the real widgets."""
    seen = []

    def answer():
        dialog = editor.sign_dialog
        if dialog is None:
            return
        seen.append(dialog)
        dialog.form.choose(login)
        dialog.form.password.setText(password)
        dialog.sign_button.click()

    QTimer.singleShot(0, answer)
    return editor.sign(status)


def answer_accept(editor, yes: bool) -> list[str]:
    """Answer the "Accept AI text" confirmation; returns the question it asked."""
    asked = []

    def answer():
        box = editor.accept_box
        asked.append(box.text())
        box.button(QMessageBox.StandardButton.Yes if yes else QMessageBox.StandardButton.Cancel).click()

    QTimer.singleShot(0, answer)
    return asked


def make_editor(qtbot, service, ct_study, ris=""):
    datasets, paths, context = ct_study
    workflow = ReportWorkflow(ReportStore(), Outbox(base_delay=0.0), lambda _uid: paths)
    editor = ReportEditor(
        service,
        workflow,
        lambda: context,
        ris_address=lambda: ris,
        draft_settings=DraftSettings(max_new_tokens=16, max_visual_tokens=256),
    )
    qtbot.addWidget(editor)
    editor.open_study(StudyInfo.from_dataset(datasets[0]))
    return editor


def test_draft_edit_accept_sign_send_and_pdf(qtbot, tiny_model_service, ct_study, tmp_path):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    assert editor.template_box.currentText() == "CT chest"
    assert editor.start_draft()
    assert editor.editors["findings"].isReadOnly() and not editor.sign_buttons[ReportStatus.FINAL].isEnabled()
    qtbot.waitUntil(lambda: editor._draft_thread is None, timeout=60000)
    report = editor.workflow.report
    ai_text = "".join(s.text for s in report.spans("findings") if s.ai)
    assert ai_text and editor.ai_marked_text("findings") == ai_text
    assert editor.editors["findings"].toPlainText() == report.text("findings")
    assert editor.workflow.audit.generations[-1].inputs[0].kind == "volume"

    assert sign_as(editor, ReportStatus.FINAL) is False and "AI-written" in editor.message_label.text()
    answer_accept(editor, yes=True)
    qtbot.mouseClick(editor.accept_button, Qt.MouseButton.LeftButton)
    assert editor.ai_marked_text("findings") == "" and report.unreviewed_ai_spans() == 0
    editor.editors["impression"].setFocus()
    qtbot.keyClicks(editor.editors["impression"], "No acute finding.")
    assert report.text("impression") == "No acute finding."
    qtbot.waitUntil(
        lambda: ReportStore().load(report.report_id)[0].text("impression") == "No acute finding.",
        timeout=5000,
    )  # saved once typing pauses

    editor.add_key_image()
    assert editor.key_list.count() == 1
    datasets = ct_study[0]
    assert [k.sop_instance_uid for k in report.key_images] == [datasets[4].SOPInstanceUID]

    assert sign_as(editor, ReportStatus.FINAL)
    assert report.status is ReportStatus.FINAL and "signed by Øster, Ben" in editor.status_label.text()
    assert editor.editors["findings"].isReadOnly() and editor.amend_button.isEnabled()
    assert not editor.ris_button.isEnabled()  # no RIS configured
    pdf = tmp_path / "report.pdf"
    task = editor.export_pdf(pdf)  # written on a worker thread from a snapshot of the report
    assert task is not None and not editor.pdf_button.isEnabled()
    assert (
        editor.export_pdf(tmp_path / "twice.pdf") is None
        and "still being written" in editor.message_label.text()
    )
    qtbot.waitUntil(lambda: editor.pdf_task is None, timeout=30000)
    assert editor.pdf_button.isEnabled() and editor.message_label.text().startswith("PDF written")
    assert not (tmp_path / "twice.pdf").exists()
    text = PdfReader(str(pdf)).pages[0].extract_text()
    assert "No acute finding." in text and "DRAFT" not in text
    stored, audit = ReportStore().load(report.report_id)
    assert stored.status is ReportStatus.FINAL and any(e["kind"] == "signed" for e in audit.events)
    assert [e["status"] for e in audit.events if e["kind"] == "pdf exported"] == ["final"]


def test_signed_report_goes_to_the_ris_and_outbox_status_shows(qtbot, tiny_model_service, ct_study):
    with python_hl7_receiver("AA") as ris:
        editor = make_editor(qtbot, tiny_model_service, ct_study, ris=ris.address)
        editor.editors["findings"].setPlainText("Normal chest.")
        assert not editor.ris_button.isEnabled()  # nothing is sent from a draft
        assert sign_as(editor, ReportStatus.PRELIMINARY)
        assert editor.ris_button.isEnabled()
        qtbot.mouseClick(editor.ris_button, Qt.MouseButton.LeftButton)
        editor.workflow.outbox.process_due()
        editor.refresh_outbox()
    assert editor.outbox_list.item(0).text().startswith("RIS P: delivered")
    [message] = ris.messages
    assert str(hl7.parse(message).segment("OBR")[25]) == "P"
    assert editor.send_to_ris() is False and "already delivered" in editor.message_label.text()


def test_amendment_then_correction(qtbot, tiny_model_service, ct_study):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    editor.editors["findings"].setPlainText("Normal.")
    assert sign_as(editor, ReportStatus.FINAL)
    assert not editor.sign_buttons[ReportStatus.CORRECTED].isEnabled()
    qtbot.mouseClick(editor.amend_button, Qt.MouseButton.LeftButton)
    assert not editor.editors["findings"].isReadOnly()
    editor.editors["findings"].setPlainText("Normal. Addendum: small nodule.")
    assert sign_as(editor, ReportStatus.CORRECTED)
    assert editor.workflow.report.status is ReportStatus.CORRECTED and editor.workflow.report.version == 2


def test_panels_mount_in_the_main_window_and_follow_the_viewport(demo_archive, make_window, qtbot):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    titles = [window.side_tabs.tabText(i) for i in range(window.side_tabs.count())]
    assert titles == ["Assistant", "Report"]
    ct_uid = window.browser_logic.rows[0].study_uid
    session = window.open_study(ct_uid)
    qtbot.waitUntil(
        lambda: window.reading.viewports and window.reading.viewports[0].view is not None, timeout=60000
    )
    panel, editor = workstation.chat_panel, workstation.report_editor
    qtbot.waitUntil(lambda: panel.scope is not None, timeout=10000)
    state = window.reading.active_state()
    assert panel.scope.series_uid == session.slots[0].series_uid
    assert panel.scope.plane == state.plane and panel.scope.slice_index == state.slice_index
    assert panel.scope.window == (state.window_width, state.window_center)
    state.set_slice(state.slice_index + 3)
    qtbot.waitUntil(lambda: panel.scope.slice_index == state.slice_index, timeout=5000)
    assert f"slice {state.slice_index + 1}" in panel.chip_texts
    assert "Settings > Model" in panel.model_label.text() and not panel.send_button.isEnabled()
    from PySide6.QtCore import QUrl

    from app.assistant.chat import ChatMessage

    panel.session.history.append(
        ChatMessage("user", "q", series_uid=panel.scope.series_uid, plane=state.plane, slices=[2, 7])
    )
    panel._render_history()
    panel._toggle_reasoning(QUrl(f"goto:{len(panel.session.history) - 1}:2"))
    assert state.slice_index == 2
    assert editor.workflow.report.study.study_instance_uid == ct_uid
    assert not editor.draft_button.isEnabled()


def test_configured_model_loads_in_the_background_and_the_status_bar_follows(
    demo_archive, make_window, qtbot, tiny_model_folder
):
    from app.gui.launch import attach_assistant
    from app.services.settings_store import SettingsStore

    SettingsStore().apply_form(
        {"model.folder": str(tiny_model_folder), "model.device": "cpu", "model.quantization": "none"}
    )
    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    service = workstation.model_service
    assert (
        workstation.chat_panel.service is service and workstation.report_editor.service is service
    )  # one model
    qtbot.waitUntil(lambda: window.model_state is not None and window.model_state.ready, timeout=60000)
    window.open_study(window.browser_logic.rows[0].study_uid)
    qtbot.waitUntil(lambda: workstation.chat_panel.send_button.isEnabled(), timeout=60000)
    assert workstation.report_editor.draft_button.isEnabled()


def test_preliminary_changed_after_signing_must_be_signed_again_before_sending(
    qtbot, tiny_model_service, ct_study
):
    editor = make_editor(qtbot, tiny_model_service, ct_study, ris="127.0.0.1:2575")
    editor.editors["findings"].setPlainText("No nodule.")
    assert sign_as(editor, ReportStatus.PRELIMINARY)
    assert editor.ris_button.isEnabled()
    assert not editor.sign_buttons[ReportStatus.PRELIMINARY].isEnabled()  # nothing new to sign
    editor.editors["findings"].setPlainText("Nodule 8 mm.")
    assert not editor.ris_button.isEnabled()
    assert "sign again before sending" in editor.status_label.text()
    [queued_on_signing] = editor.workflow.messages()  # the RIS is on: signing queued it
    assert editor.send_to_ris() is False and editor.workflow.messages() == [queued_on_signing]
    assert editor.sign_buttons[ReportStatus.PRELIMINARY].isEnabled()
    assert sign_as(editor, ReportStatus.PRELIMINARY)
    assert editor.ris_button.isEnabled() and "sign again" not in editor.status_label.text()


def _signed_window(demo_archive, make_window, qtbot):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    window.open_study(window.browser_logic.rows[0].study_uid)
    editor = workstation.report_editor
    qtbot.waitUntil(lambda: editor.workflow.report is not None, timeout=10000)
    editor.editors["findings"].setPlainText("Normal.")
    assert sign_as(editor, ReportStatus.FINAL)
    return window, editor


def test_ris_switch_and_msh_names_come_from_settings(demo_archive, make_window, qtbot):
    window, editor = _signed_window(demo_archive, make_window, qtbot)
    with python_hl7_receiver("AA") as ris:
        host, port = ris.address.rsplit(":", 1)
        form = {
            "ris.host": host,
            "ris.port": port,
            "ris.sending_application": "READROOM7",
            "ris.sending_facility": "NORTHRAD",
            "ris.receiving_application": "EPICRIS",
        }
        window.apply_settings(window.store.apply_form({**form, "ris.enabled": "false"}))
        assert not editor.ris_button.isEnabled()  # a configured but disabled RIS gets nothing
        assert "Enable the RIS" in editor.ris_button.toolTip()
        window.apply_settings(window.store.apply_form({**form, "ris.enabled": "true"}))
        assert editor.ris_button.isEnabled()
        assert editor.send_to_ris()
        editor.workflow.outbox.process_due()
    [message] = ris.messages
    msh = hl7.parse(message).segment("MSH")
    assert (str(msh[3]), str(msh[4]), str(msh[5])) == ("READROOM7", "NORTHRAD", "EPICRIS")


def test_signing_with_the_ris_enabled_sends_the_report_without_another_click(
    demo_archive, make_window, qtbot
):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    editor = attach_assistant(window).report_editor
    window.open_study(window.browser_logic.rows[0].study_uid)
    qtbot.waitUntil(lambda: editor.workflow.report is not None, timeout=10000)
    with python_hl7_receiver("AA") as ris:
        host, port = ris.address.rsplit(":", 1)
        window.apply_settings(
            window.store.apply_form({"ris.host": host, "ris.port": port, "ris.enabled": "true"})
        )
        editor.editors["findings"].setPlainText("Normal.")
        assert sign_as(editor, ReportStatus.FINAL)
        assert "queued for the RIS" in editor.message_label.text()
        editor.workflow.outbox.process_due()
    [message] = ris.messages
    assert str(hl7.parse(message).segment("OBR")[25]) == "F"


def test_predraft_setting_starts_and_stops_the_predrafter(demo_archive, make_window, qtbot):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    assert not workstation.predrafting.running  # off by default
    window.apply_settings(window.store.apply_form({"general.predraft": "true"}))
    assert workstation.predrafting.running and workstation.predrafting.predrafter._thread.is_alive()
    thread = workstation.predrafting.predrafter._thread
    window.apply_settings(window.store.apply_form({"general.predraft": "false"}))
    assert not workstation.predrafting.running
    thread.join(15)
    assert not thread.is_alive()


def test_model_folder_chosen_in_settings_loads_without_restart_and_a_wrong_one_says_why(
    demo_archive, make_window, qtbot, tiny_model_folder, tmp_path
):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    panel = workstation.chat_panel
    assert workstation.model_service.state.kind == "absent" and "Settings > Model" in panel.model_label.text()
    wrong = tmp_path / "not-a-model"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("x")
    window.apply_settings(
        window.store.apply_form(
            {"model.folder": str(wrong), "model.device": "cpu", "model.quantization": "none"}
        )
    )
    qtbot.waitUntil(lambda: workstation.model_service.state.kind == "failed", timeout=60000)
    qtbot.waitUntil(lambda: "config.json" in panel.model_label.text(), timeout=5000)
    assert "Settings > Model" in panel.model_label.text() and str(wrong) in panel.model_label.text()
    window.apply_settings(window.store.apply_form({"model.folder": str(tiny_model_folder)}))
    qtbot.waitUntil(lambda: workstation.model_service.state.ready, timeout=60000)
    qtbot.waitUntil(
        lambda: not panel.model_label.isVisible() or panel.model_label.text().startswith("Model ready"),
        timeout=5000,
    )


def test_the_editor_names_the_patient_the_report_is_for(qtbot, tiny_model_service, ct_study):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    datasets = ct_study[0]
    lines = editor.study_label.text().split("\n")
    assert lines[0].startswith("Zoë, Ærø - ID ED-PID")
    assert lines[1].endswith("accession ED-ACC")
    date = str(datasets[0].StudyDate)
    assert f"{date[:4]}-{date[4:6]}-{date[6:]}" in lines[1]


def test_opening_another_study_while_drafting_stops_the_draft_and_keeps_its_record(
    qtbot, tiny_model_service, ct_study
):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    editor.draft_settings = DraftSettings(max_new_tokens=4000, max_visual_tokens=256)
    first = editor.workflow.report
    with qtbot.waitSignal(editor.draft_updated, timeout=60000):
        assert editor.start_draft()
    other = StudyInfo(study_instance_uid="1.2.826.0.1.3680043.8.498.77", patient_id="OTHER", modality="CT")
    editor.open_study(other)  # returns at once; the draft ends in the background
    assert editor.workflow.report.study.study_instance_uid == other.study_instance_uid
    qtbot.waitUntil(lambda: editor._draft_thread is None, timeout=60000)
    stored, audit = ReportStore().load(first.report_id)
    [generation] = audit.generations
    assert generation.outcome == "cancelled" and generation.finished_at
    assert generation.new_tokens < 4000
    ai = "".join(s.text for s in stored.spans("findings") + stored.spans("impression") if s.ai)
    assert ai and stored.unreviewed_ai_spans() >= 1  # what streamed is kept, still marked AI
    assert editor.workflow.report.unreviewed_ai_spans() == 0  # nothing leaked into the other study
    assert "previous study was stopped" in editor.message_label.text()


def test_a_damaged_report_record_never_leaves_the_previous_patients_report_on_screen(
    qtbot, tiny_model_service, ct_study
):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    editor.editors["findings"].setPlainText("First patient: normal.")
    editor.flush()
    store = ReportStore()
    other = StudyInfo(study_instance_uid="1.2.826.0.1.3680043.8.498.78", patient_id="P2", modality="CT")
    damaged = Report(other)
    damaged.set_text("findings", "Second patient text.")
    store.save(damaged, AuditRecord(damaged.report_id, other.study_instance_uid))
    audit_file = store.root / damaged.report_id / "audit.json"
    audit_file.write_text("{not json")
    (store.root / "0badrecord").mkdir()
    (store.root / "0badrecord" / "report.json").write_text("garbage")  # another study's damaged record
    editor.open_study(other)
    assert editor.workflow.report is None
    assert editor.editors["findings"].toPlainText() == "" and editor.editors["findings"].isReadOnly()
    assert "cannot be read" in editor.message_label.text() and "ID P2" in editor.study_label.text()
    assert not any(b.isEnabled() for b in editor.sign_buttons.values())
    assert audit_file.read_text() == "{not json"  # left as it was
    editor.open_study(StudyInfo.from_dataset(ct_study[0][0]))  # one damaged record does not block others
    assert editor.workflow.report.text("findings") == "First patient: normal."


def test_an_unreadable_study_clears_the_report_editor(demo_archive, make_window, qtbot):
    window, editor = _signed_window(demo_archive, make_window, qtbot)
    assert editor.workflow.report is not None
    uid = window.browser_logic.rows[0].study_uid
    for series in demo_archive.series(uid):
        for instance in demo_archive.instances(series.series_uid):
            Path(instance.path).write_bytes(b"not dicom")
    window.study_opened.emit(uid)
    assert editor.workflow.report is None and editor.study_label.text() == "No study open."
    assert "cannot be read" in editor.message_label.text()
    assert editor.editors["findings"].toPlainText() == ""


OTHER = StudyInfo(
    study_instance_uid="1.2.826.0.1.3680043.8.498.79",
    patient_id="P2",
    accession_number="ACC-P2",
    modality="CT",
)


def test_signing_asks_for_a_password_every_time_and_the_signer_does_not_carry_over(
    qtbot, tiny_model_service, ct_study
):
    from app.reporting.users import UserStore

    UserStore().add("kim", "Kim^Lee", "other secret")
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    editor.editors["findings"].setPlainText("Normal.")
    assert sign_as(editor, ReportStatus.FINAL, password="wrong guess") is False
    report = editor.workflow.report
    assert report.status is ReportStatus.DRAFT and not report.signatures
    assert "Wrong user or password" in editor.message_label.text()
    assert sign_as(editor, ReportStatus.FINAL, login="kim", password="correct horse") is False  # not kim's
    assert sign_as(editor, ReportStatus.FINAL)
    assert (report.signatures[-1].user, report.radiologist) == ("boster", "Øster^Ben")
    assert "signed by Øster, Ben" in editor.status_label.text()

    editor.open_study(OTHER)  # the next patient: nobody is preselected, no password remembered
    editor.editors["findings"].setPlainText("Other patient.")
    shown = []

    def look_and_cancel():
        dialog = editor.sign_dialog
        shown.append((dialog.form.login, dialog.form.password.text(), dialog.windowTitle()))
        dialog.reject()

    QTimer.singleShot(0, look_and_cancel)
    assert editor.sign(ReportStatus.FINAL) is False
    assert shown == [("", "", "Sign final")]
    assert editor.workflow.report.status is ReportStatus.DRAFT and "Not signed" in editor.message_label.text()


LONG_AI = (
    "The liver is normal in size and attenuation without a focal lesion. The gallbladder is "
    "unremarkable. The pancreas, spleen and adrenal glands are normal. No free fluid."
)


def test_typing_inside_a_long_ai_passage_keeps_the_rest_marked_and_accepting_asks_first(
    qtbot, tiny_model_service, ct_study
):
    editor = make_editor(qtbot, tiny_model_service, ct_study)
    report = editor.workflow.report
    report.append_ai_text("findings", LONG_AI)
    editor._render()
    box = editor.editors["findings"]
    cursor = box.textCursor()
    cursor.setPosition(LONG_AI.index("without"))
    box.setTextCursor(cursor)
    box.setFocus()
    qtbot.keyClicks(box, "(checked) ")
    qtbot.keyClicks(box, "x")  # 11 characters typed inside the passage
    assert report.text("findings") == LONG_AI.replace("without", "(checked) xwithout")
    assert editor.ai_marked_text("findings") == LONG_AI  # every untouched AI character still marked
    assert report.unreviewed_ai_spans() == 2
    assert sign_as(editor, ReportStatus.FINAL) is False and report.status is ReportStatus.DRAFT

    asked = answer_accept(editor, yes=False)
    qtbot.mouseClick(editor.accept_button, Qt.MouseButton.LeftButton)
    assert "Accept 2 AI-written passage(s)" in asked[0]
    assert editor.ai_marked_text("findings") == LONG_AI and report.unreviewed_ai_spans() == 2
    answer_accept(editor, yes=True)
    qtbot.mouseClick(editor.accept_button, Qt.MouseButton.LeftButton)
    assert editor.ai_marked_text("findings") == "" and report.unreviewed_ai_spans() == 0
    assert report.contains_ai_text  # accepted, still known as AI-written for the exports
    events = [e for e in editor.workflow.audit.events if e["kind"] == "accepted AI text"]
    assert [e["passages"] for e in events] == ["2"]


def test_pasted_control_characters_are_cleaned_in_the_editor(qtbot, tiny_model_service, ct_study):
    from PySide6.QtWidgets import QApplication

    editor = make_editor(qtbot, tiny_model_service, ct_study)
    box = editor.editors["findings"]
    QApplication.clipboard().setText("Lungs clear.\x0bHeart\x01 normal.")
    box.setFocus()
    box.paste()
    assert editor.workflow.report.text("findings") == "Lungs clear.\nHeart normal."
    assert box.toPlainText() == "Lungs clear.\nHeart normal."
    assert sign_as(editor, ReportStatus.FINAL)


def test_key_images_come_back_with_the_report_and_go_into_the_pdf(
    qtbot, tiny_model_service, ct_study, tmp_path, monkeypatch
):
    from pypdf import PdfReader
    from PySide6.QtWidgets import QFileDialog

    from app.reporting.pdf import pdf_file_name

    editor = make_editor(qtbot, tiny_model_service, ct_study)
    editor.editors["findings"].setPlainText("Normal.")
    editor.add_key_image()
    assert editor.key_list.count() == 1
    editor.open_study(OTHER)
    assert editor.key_list.count() == 0
    editor.open_study(StudyInfo.from_dataset(ct_study[0][0]))
    assert editor.key_list.count() == 1 and editor.key_list.item(0).text() == "axial 5"
    assert len(editor.workflow.key_pixels) == 1

    asked = []

    def save_dialog(parent, caption, suggested, filters):
        asked.append(Path(suggested))
        return str(tmp_path / Path(suggested).name), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    editor.pdf_folder = tmp_path / "documents"
    assert editor.export_pdf(None) is not None
    qtbot.waitUntil(lambda: editor.pdf_task is None, timeout=30000)
    [suggested] = asked
    assert suggested == tmp_path / "documents" / pdf_file_name(editor.workflow.report)
    assert suggested.name.startswith("report_ED-ACC_CT_") and suggested.name.endswith("_draft_v1.pdf")
    written = tmp_path / suggested.name
    page = PdfReader(str(written)).pages[0]
    assert len(page.images) == 1
    date = str(ct_study[0][0].StudyDate)
    assert f"{date[:4]}-{date[4:6]}-{date[6:]}" in page.extract_text()
    assert editor.pdf_folder == tmp_path  # the next export starts where this one was saved


def test_the_pacs_list_follows_nodes_added_in_settings(demo_archive, make_window, qtbot):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    editor = attach_assistant(window).report_editor
    window.open_study(window.browser_logic.rows[0].study_uid)
    qtbot.waitUntil(lambda: editor.workflow.report is not None, timeout=10000)
    assert editor.pacs_box.count() == 0
    window.show_settings()
    page = window.settings_dialog.pacs_page
    for key, value in {"name": "mainpacs", "aet": "ORTHANC", "host": "127.0.0.1", "port": "4242"}.items():
        page.fields[key].setText(value)
    assert page.save_node()
    assert [editor.pacs_box.itemText(i) for i in range(editor.pacs_box.count())] == ["mainpacs"]
    window.settings_dialog.reject()


def test_the_workstation_locks_when_idle_and_only_a_users_password_unlocks_it(
    demo_archive, make_window, qtbot
):
    from app.gui.launch import attach_assistant

    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    lock = workstation.lock
    assert lock.timer.interval() == 15 * 60_000  # Settings > General default
    window.apply_settings(window.store.apply_form({"general.lock_after_minutes": "0"}))
    assert not lock.timer.isActive()
    from PySide6.QtWidgets import QDialog

    pending = QDialog(window)  # e.g. a sign-off left waiting for its password
    pending.setModal(True)
    pending.open()
    lock.set_timeout_ms(300)
    qtbot.waitUntil(lambda: lock.locked, timeout=5000)
    assert lock.screen.geometry() == window.rect()
    assert not pending.isVisible() and pending.result() == QDialog.DialogCode.Rejected
    lock.screen.form.choose("boster")
    qtbot.keyClicks(lock.screen.form.password, "wrong")
    qtbot.mouseClick(lock.screen.unlock_button, Qt.MouseButton.LeftButton)
    assert lock.locked and "Wrong" in lock.screen.message.text()
    qtbot.keyClicks(lock.screen.form.password, PASSWORD)
    qtbot.mouseClick(lock.screen.unlock_button, Qt.MouseButton.LeftButton)
    assert not lock.locked and lock.timer.isActive()
