"""Query/retrieve from a real Orthanc through the PACS dialog; the retrieved study opens like a local one."""

from __future__ import annotations

import pydicom
import pytest

from app.gui.pacs_dialog import PacsDialog
from dicom_net.pacs_nodes import PacsNode, PacsNodes
from tests.peers import OrthancServer, orthanc_module, peer_network

__all__ = ["orthanc_module", "peer_network"]  # fixtures used below
pytestmark = pytest.mark.network_peer

CALLING = "HULUAPP"


def test_query_then_retrieve_with_progress_opens_the_study(
    orthanc_module: OrthancServer, archive, demo_files, make_window, qtbot, screenshot_dir
):
    orthanc = orthanc_module
    orthanc.clear()
    orthanc.upload([p for p in demo_files if p.parent.name in ("dx", "us")])
    orthanc.add_modality("huluapp", CALLING, orthanc.network.host_ip, 1)
    PacsNodes().add(
        PacsNode(
            "orthanc",
            orthanc.aet,
            orthanc.host,
            orthanc.dicom_port,
            calling_aet=CALLING,
            retrieve_method="get",
        )
    )
    window = make_window(archive)
    dialog = PacsDialog(window.tasks, archive, "HULUWS", parent=window)
    qtbot.addWidget(dialog)
    dialog.retrieved.connect(window._retrieved)
    assert dialog.node_box.currentText() == "orthanc"
    dialog.fields["patient_name"].setText("demo")
    dialog.fields["description"].setText("phantom")
    dialog.query()
    qtbot.waitUntil(lambda: dialog.results.rowCount() == 1, timeout=20000)
    assert dialog.results.item(0, 1).text() == "DEMO0001"
    dialog.fields["description"].setText("no such study")
    dialog.query()
    qtbot.waitUntil(lambda: "0 studies found" in dialog.status.text(), timeout=20000)
    dialog.fields["description"].clear()
    dialog.query()
    qtbot.waitUntil(lambda: dialog.results.rowCount() == 1, timeout=20000)
    progress = []
    window.tasks._signals.progress.connect(lambda _id, done, total, _t: progress.append((done, total)))
    dialog.results.selectRow(0)
    with qtbot.waitSignal(dialog.retrieved, timeout=30000) as blocker:
        dialog.retrieve_selected()
    study_uid = blocker.args[0]
    assert "Retrieved: 2 images, 0 failed" in dialog.status.text()
    assert progress and progress[-1][0] == 2
    qtbot.waitUntil(lambda: [r.study_uid for r in window.browser_logic.rows] == [study_uid], timeout=5000)
    session = window.open_study(study_uid)
    assert {s.modality for s in session.series} == {"DX", "US"}
    qtbot.waitUntil(lambda: all(vp.view is not None for vp in window.reading.viewports), timeout=30000)
    assert type(window.reading.viewports[0].view).__name__ == "StackView"  # DX hangs 1x1


def test_c_move_sends_the_study_to_the_supervised_listener_and_it_opens(
    orthanc_module: OrthancServer, archive, demo_files, make_window, qtbot
):
    """The PACS dialog's C-MOVE: Orthanc sends the study to the app's own supervised listener
    (bound on the private network's host address, the AE known to Orthanc as the destination),
    the listener process stores it in the archive, the browser shows it and it opens."""
    from app.services.listener_supervisor import ListenerSupervisor, read_status_report
    from app.services.settings_store import SettingsStore
    from tests.conftest import free_port

    orthanc = orthanc_module
    orthanc.clear()
    dx_us = [p for p in demo_files if p.parent.name in ("dx", "us")]
    orthanc.upload(dx_us)
    study_uid = orthanc.study_uids()[0]
    host = orthanc.network.host_ip
    store = SettingsStore()
    settings = store.apply_form(
        {
            "listener.aet": "HULUWS",
            "listener.port": str(free_port()),
            "listener.host": host,
            "listener.allowed_aets": orthanc.aet,
        }
    )
    orthanc.add_modality("huluapp", CALLING, host, 1)  # the requester (never called back)
    orthanc.add_modality("huluws", "HULUWS", host, settings.listener.port)  # the move destination
    PacsNodes().add(
        PacsNode(
            "orthanc",
            orthanc.aet,
            orthanc.host,
            orthanc.dicom_port,
            calling_aet=CALLING,
            retrieve_method="move",
        )
    )
    supervisor = ListenerSupervisor(
        archive.root, settings.listener, log_path=archive.root.parent / "listener.log"
    )
    try:
        supervisor.start()
        window = make_window(archive, supervisor)
        qtbot.waitUntil(
            lambda: (
                read_status_report(archive.root).get("pid") == supervisor.poll().pid
                and read_status_report(archive.root).get("state") == "running"
            ),
            timeout=30000,
        )
        assert window.browser_logic.rows == []
        window.show_pacs_dialog()
        dialog = window.pacs_dialog
        assert dialog.listener_aet == "HULUWS" and dialog.node_box.currentText() == "orthanc"
        dialog.fields["patient_name"].setText("demo")
        dialog.query()
        qtbot.waitUntil(lambda: dialog.results.rowCount() == 1, timeout=20000)
        dialog.results.selectRow(0)
        with qtbot.waitSignal(dialog.retrieved, timeout=60000) as blocker:
            dialog.retrieve_selected()
        assert blocker.args[0] == study_uid
        assert dialog.status.text() == f"Retrieved: {len(dx_us)} images, 0 failed"
        qtbot.waitUntil(
            lambda: (
                [(r.study_uid, r.instance_count) for r in window.browser_logic.rows]
                == [(study_uid, len(dx_us))]
            ),
            timeout=20000,
        )
        assert window.browser.selected_study_uid() == study_uid  # the dialog selected it in the browser
        stored = {
            i.sop_instance_uid for s in archive.series(study_uid) for i in archive.instances(s.series_uid)
        }
        assert stored == {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dx_us}
        session = window.open_study(study_uid)
        assert {s.modality for s in session.series} == {"DX", "US"}
        qtbot.waitUntil(lambda: all(vp.view is not None for vp in window.reading.viewports), timeout=30000)
        assert type(window.reading.viewports[0].view).__name__ == "StackView"
    finally:
        supervisor.stop()


def test_settings_echo_button_reports_success_and_failure(
    orthanc_module: OrthancServer, make_window, archive, qtbot
):
    from app.gui.settings_dialog import SettingsDialog

    orthanc = orthanc_module
    orthanc.add_modality("huluapp", CALLING, orthanc.network.host_ip, 1)
    window = make_window(archive)
    dialog = SettingsDialog(window.store, parent=window)
    qtbot.addWidget(dialog)
    page = dialog.pacs_page
    values = {
        "name": "orthanc",
        "aet": orthanc.aet,
        "host": orthanc.host,
        "port": str(orthanc.dicom_port),
        "calling_aet": CALLING,
    }
    for key, value in values.items():
        page.fields[key].setText(value)
    with qtbot.waitSignal(page.echo_result, timeout=15000) as ok:
        page.echo()
    assert ok.args[0].startswith("C-ECHO orthanc: OK in ")
    assert page.status.text() == ok.args[0]
    page.fields["aet"].setText("NOT_ORTHANC")  # Orthanc rejects a wrong called AE title
    with qtbot.waitSignal(page.echo_result, timeout=15000) as bad:
        page.echo()
    assert bad.args[0].startswith("C-ECHO orthanc failed:")
