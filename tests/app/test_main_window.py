"""Main window workflows through the real widgets: demo study on first launch, drag-and-drop
import, anonymised export, delete, settings dialog refusal, shortcut help, side dock, state memory."""

from __future__ import annotations

import zipfile

import pydicom
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QLabel

from app.assistant.model_service import ModelState
from app.reading.keymap import SHORTCUTS, conflicts
from app.services.settings_store import SettingsStore
from dicom_net.synthetic import radiograph, write_datasets

from .conftest import save_screenshot


def test_first_launch_offers_and_creates_the_demo_study(archive, make_window, qtbot, screenshot_dir):
    window = make_window(archive)
    assert window.demo_banner.isVisible()
    save_screenshot(window, screenshot_dir / "first_launch_empty.png")
    window.create_demo_study()
    qtbot.waitUntil(lambda: not window.tasks.active, timeout=120000)
    qtbot.waitUntil(lambda: len(window.browser_logic.rows) == 1, timeout=5000)
    study = window.browser_logic.rows[0]
    assert sorted(study.modalities) == ["CT", "DX", "US"] and study.series_count == 3
    assert not window.demo_banner.isVisible()


def test_build_window_creates_demo_when_asked_by_setting(themed_app, qtbot):
    from app.gui.launch import build_workstation

    store = SettingsStore()
    store.apply_form({"general.create_demo_if_empty": "true"})
    window = build_workstation(start_listener=False).window
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: not window.tasks.active, timeout=120000)
    assert len(window.browser_logic.archive.studies()) == 1
    window.archive.close()


def test_drop_zip_imports_then_export_anonymised_and_delete_in_the_background(
    archive, demo_files, make_window, qtbot, tmp_path
):
    dx = [p for p in demo_files if p.parent.name == "dx"]
    bundle = tmp_path / "incoming.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(dx[0], "a/dx.dcm")
        zf.writestr("a/readme.txt", "not dicom")
    window = make_window(archive)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bundle))])
    window.dropEvent(
        QDropEvent(
            QPointF(5, 5),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    qtbot.waitUntil(lambda: len(window.browser_logic.rows) == 1, timeout=20000)
    uid = window.browser_logic.rows[0].study_uid
    out = tmp_path / "anon.zip"
    window.export_study(uid, True, destination=out)
    qtbot.waitUntil(lambda: out.exists() and not window.tasks.active, timeout=20000)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        ds = pydicom.dcmread(zf.open(names[0]))
    assert len(names) == 1 and ds.PatientName == "ANONYMOUS" and ds.StudyInstanceUID != uid
    window.open_study(uid)
    loads = list(window.tasks.active.values())
    task = window.delete_study(uid, confirm=False)
    assert task is not None and window.session is None and window.reading.viewports == []
    assert loads and all(h.cancel_event.is_set() for h in loads)  # its series loads are stopped
    # until the worker is done: row greyed and marked, and a second delete, an open, an export refused
    row = window.browser.model.index(0, 0)
    assert not (window.browser.model.flags(row) & Qt.ItemFlag.ItemIsEnabled)
    assert window.browser_logic.status_text(window.browser_logic.rows[0]) == "deleting..."
    assert window.delete_study(uid, confirm=False) is None
    assert window.open_study(uid) is None and window.session is None
    window.export_study(uid, True, destination=tmp_path / "again.zip")
    assert [h.title for h in window.tasks.active.values() if not h.cancel_event.is_set()] == ["Delete study"]
    qtbot.waitUntil(lambda: not window.tasks.active, timeout=20000)
    assert window.browser_logic.rows == [] and archive.studies() == [] and not window.browser_logic.busy
    assert not (tmp_path / "again.zip").exists()


def test_settings_dialog_refuses_invalid_form_and_applies_valid_one(make_window, archive, qtbot):
    from app.gui.settings_dialog import SettingsDialog

    window = make_window(archive)
    dialog = SettingsDialog(window.store, parent=window)
    qtbot.addWidget(dialog)
    dialog.inputs["listener.aet"].setText("NEWAET")
    dialog.inputs["listener.port"].setText("99999")
    dialog.inputs["ris.host"].setText("ris.local")
    assert dialog.try_apply() is None
    assert set(dialog.last_errors) == {"listener.port"}
    assert "Port" in dialog.error_label.text()
    assert SettingsStore().load().listener.aet == "HULUWS"  # nothing half-applied
    dialog.inputs["listener.port"].setText("11500")
    applied = []
    dialog.applied.connect(applied.append)
    settings = dialog.try_apply()
    assert settings is not None and applied == [settings]
    stored = SettingsStore().load()
    assert (stored.listener.aet, stored.listener.port, stored.ris.host) == ("NEWAET", 11500, "ris.local")


def test_pacs_node_form_validates_and_saves(make_window, archive, qtbot):
    from app.gui.settings_dialog import SettingsDialog
    from dicom_net.pacs_nodes import PacsNodes

    window = make_window(archive)
    dialog = SettingsDialog(window.store, parent=window)
    qtbot.addWidget(dialog)
    page = dialog.pacs_page
    for key, value in {"name": "main", "aet": "ORTHANC", "host": "127.0.0.1", "port": "notaport"}.items():
        page.fields[key].setText(value)
    assert not page.save_node() and "port" in page.status.text()
    page.fields["port"].setText("4242")
    assert page.save_node()
    assert PacsNodes().get("main").port == 4242 and page.list.count() == 1


def test_shortcut_table_has_no_conflicts_and_help_lists_every_key(make_window, archive):
    assert conflicts() == {}
    window = make_window(archive)
    dialog = window.show_shortcuts()
    text = dialog.layout().itemAt(0).widget().toPlainText()
    for sc in SHORTCUTS:
        assert sc.description in text
        assert all(k in text for k in sc.keys)
    dialog.close()


def test_side_dock_placeholder_is_replaced_by_mounted_panels(make_window, archive):
    window = make_window(archive)
    assert window.side_tabs.count() == 1 and window.side_tabs.widget(0) is window.side_placeholder
    index = window.add_side_panel(QLabel("chat"), "Assistant")
    window.add_side_panel(QLabel("report"), "Report")
    assert window.side_tabs.count() == 2 and window.side_tabs.tabText(index) == "Assistant"
    assert window.model_label.text() == "Model: not loaded"  # no model service yet
    window.set_model_state(ModelState("loading", "Loading the model"), "nf4")
    assert window.model_label.text() == "Model: loading (nf4)"
    assert window.gpu_label.text().startswith(("CPU", "GPU"))


def test_window_state_is_remembered(make_window, archive, qtbot):
    window = make_window(archive, size=(1100, 540))
    size = (window.width(), window.height())
    assert size != (1500, 920)  # not the default size
    window.right_dock.hide()
    window.close()
    again = make_window(archive, size=None)
    assert again.height() == size[1]
    if size[0] < again.screen().availableGeometry().width():  # offscreen's 800 px screen clamps the width
        assert again.width() == size[0]
    assert not again.right_dock.isVisible()


def test_browser_filter_bar_filters_and_sorts_through_widgets(demo_archive, make_window, qtbot, tmp_path):
    window = make_window(demo_archive)
    browser = window.browser
    assert browser.proxy.rowCount() == 1
    browser.modality.setCurrentText("MR")  # the demo has CT, DX and US only
    assert browser.proxy.rowCount() == 0
    browser.modality.setCurrentIndex(0)  # any modality
    browser.fields["patient_id"].setText("DEMO0001")
    qtbot.keyClick(browser.fields["patient_id"], Qt.Key.Key_Return)
    assert browser.proxy.rowCount() == 1
    browser.fields["date_from"].setText("yesterday")
    browser.apply_filter()
    assert "YYYY-MM-DD" in browser.message.text() and browser.proxy.rowCount() == 1
    browser.clear_filter()
    assert browser.message.text() == "" and browser.proxy.rowCount() == 1
    # a second study arrives (another writer); sort by patient name and by image count
    other = {
        "name": "AARON^ZED",
        "id": "Z1",
        "birth_date": "",
        "sex": "M",
        "accession": "Z",
        "study_description": "Knee",
    }
    for f in write_datasets([radiograph(patient=other)], tmp_path / "z"):
        demo_archive.store_file(f)
    qtbot.waitUntil(lambda: browser.proxy.rowCount() == 2, timeout=5000)
    browser.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert browser.proxy.index(0, 0).data() == "AARON ZED"
    browser.table.sortByColumn(7, Qt.SortOrder.DescendingOrder)  # images: 42 before 1 (numeric, not text)
    assert [browser.proxy.index(r, 7).data() for r in range(2)] == ["42", "1"]


def test_hulu_workstation_command_opens_gui_and_listener_outlives_it(_private_home):
    """`hulu-workstation` with no sub-command (app.cli.main -> run_gui) starts the listener and the
    report delivery service as their own processes; when the GUI process ends, both keep working."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from app.services.delivery_service import running_service_pid
    from tests.conftest import free_port

    home = _private_home
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("DISPLAY", None)
    port = free_port()
    SettingsStore().apply_form({"listener.port": str(port), "listener.aet": "HULUGUI"})
    gui = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    status = home / "archive" / "listener-status.json"
    listener_pid = service_pid = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and listener_pid is None:
            time.sleep(0.2)
            assert gui.poll() is None, "the GUI exited early"
            if status.exists():
                report = json.loads(status.read_text())
                if report.get("state") == "running" and report.get("port") == port:
                    listener_pid = report["pid"]
        assert listener_pid is not None and listener_pid != gui.pid
        assert psutil.Process(listener_pid).ppid() == gui.pid  # spawned by the GUI's supervisor
        while time.monotonic() < deadline and service_pid is None:
            service_pid = running_service_pid()
            time.sleep(0.1)
        assert service_pid is not None and service_pid not in (gui.pid, listener_pid)
        gui.send_signal(signal.SIGTERM)
        gui.wait(20)
        time.sleep(0.5)
        assert psutil.Process(listener_pid).status() != psutil.STATUS_ZOMBIE  # still receiving
        assert run_echoscu_ok(port)
        assert running_service_pid() == service_pid  # signed reports still go out
    finally:
        if gui.poll() is None:
            gui.kill()
            gui.wait()
        for pid in (listener_pid, service_pid or running_service_pid()):
            if pid and pid > 0 and psutil.pid_exists(pid):
                os.kill(pid, signal.SIGTERM)
                psutil.Process(pid).wait(10)


def run_echoscu_ok(port: int) -> bool:
    from tests.peers import run_echoscu

    return run_echoscu("127.0.0.1", port, "HULUGUI").returncode == 0


def test_check_boxes_are_visible_in_the_dark_theme(themed_app, qtbot):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton

    box = QCheckBox("Pre-draft")
    qtbot.addWidget(box)
    box.resize(160, 24)

    def indicator_colours() -> tuple[QColor, QColor, QColor]:
        option = QStyleOptionButton()
        box.initStyleOption(option)
        rect = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
        image = box.grab().toImage()
        centre = rect.center()
        return (
            image.pixelColor(rect.left(), centre.y()),
            image.pixelColor(centre),
            image.pixelColor(rect.right() + 3, centre.y()),
        )

    border, inside, beside = indicator_colours()
    assert border.name() == "#8a9099" and inside.name() == "#141618"
    assert beside.name() != border.name()  # the border stands out from the dialog background
    box.setChecked(True)
    border, inside, _ = indicator_colours()
    assert inside.name() == "#5d9bd5"
