"""The listener runs as its own process under the supervisor: restart after kill -9, adoption,
survival of window close, and a study sent by DCMTK storescu appearing live in the browser."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import replace

import psutil
import pytest
from PySide6.QtCore import Qt

from app.services.listener_supervisor import ListenerState, ListenerSupervisor, read_status_report
from app.services.settings_model import ListenerSettings
from tests.conftest import free_port
from tests.peers import run_echoscu, run_storescu

from .conftest import save_screenshot

pytestmark = pytest.mark.network_peer


@pytest.fixture
def supervisor(archive):
    sup = ListenerSupervisor(
        archive.root,
        ListenerSettings(aet="HULUTEST", port=free_port()),
        log_path=archive.root.parent / "listener.log",
    )
    yield sup
    sup.stop()


def wait_listening(qtbot, sup: ListenerSupervisor) -> None:
    """Until the supervised process has written its status file (it is then accepting)."""

    def ready() -> bool:
        sup.poll()
        report = read_status_report(sup.archive)
        return report.get("pid") == sup.pid and report.get("state") == "running"

    qtbot.waitUntil(ready, timeout=30000)


def test_killed_listener_is_restarted_and_status_bar_says_so(
    archive, supervisor, make_window, qtbot, screenshot_dir
):
    supervisor.start()
    window = make_window(archive, supervisor)
    wait_listening(qtbot, supervisor)
    first = supervisor.pid
    assert run_echoscu("127.0.0.1", supervisor.settings.port, "HULUTEST").returncode == 0
    qtbot.waitUntil(lambda: "Listener running HULUTEST@" in window.listener_label.text(), timeout=5000)
    os.kill(first, signal.SIGKILL)
    qtbot.waitUntil(lambda: "restarted 1x" in window.listener_label.text(), timeout=10000)
    assert supervisor.pid != first and supervisor.status().state is ListenerState.RUNNING
    wait_listening(qtbot, supervisor)
    assert run_echoscu("127.0.0.1", supervisor.settings.port, "HULUTEST").returncode == 0
    save_screenshot(window, screenshot_dir / "listener_restarted.png")


def test_closing_the_window_keeps_receiving_and_a_new_supervisor_adopts_it(
    archive, supervisor, make_window, qtbot
):
    supervisor.start()
    window = make_window(archive, supervisor)
    wait_listening(qtbot, supervisor)
    pid = supervisor.pid
    window.close()  # as the title bar's close button: first the user is told what keeps running
    assert window.isVisible() and window.quit_box is not None and window.quit_box.isVisible()
    notice = window.quit_box.text()
    assert f"process {pid}" in notice and "keeps receiving" in notice
    assert f"hulu-workstation receive --stop --archive {archive.root}" in notice
    keep = next(b for b in window.quit_box.buttons() if b.text() == "Quit, keep receiving")
    qtbot.mouseClick(keep, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    again = ListenerSupervisor(archive.root, supervisor.settings)
    assert again.start().pid == pid  # adopted, not a second listener fighting for the port
    window2 = make_window(archive, again)
    window2.quit_and_stop_listener()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert again.status().state is ListenerState.STOPPED


def test_listener_that_cannot_start_ends_failed_with_reason(archive, qtbot):
    bad = ListenerSupervisor(
        archive.root,
        ListenerSettings(aet="HULUTEST", port=free_port()),
        command_factory=lambda s, a: ["python3", "-c", "import sys; sys.exit(3)"],
        max_rapid_failures=3,
    )
    bad.start()
    qtbot.waitUntil(lambda: bad.poll().state is ListenerState.FAILED, timeout=10000)
    assert "exited 3 times" in bad.status().message and "code 3" in bad.status().message


def test_study_sent_by_storescu_appears_live_and_opens(
    archive, supervisor, demo_files, make_window, qtbot, screenshot_dir
):
    supervisor.start()
    window = make_window(archive, supervisor)
    wait_listening(qtbot, supervisor)
    ct = sorted(p for p in demo_files if p.parent.name == "ct")
    assert window.browser_logic.rows == []
    result = run_storescu(ct, "127.0.0.1", supervisor.settings.port, "HULUTEST")
    assert result.returncode == 0, result.stderr
    qtbot.waitUntil(
        lambda: (
            len(window.browser_logic.rows) == 1 and window.browser_logic.rows[0].instance_count == len(ct)
        ),
        timeout=20000,
    )
    model = window.browser.proxy
    assert model.rowCount() == 1
    texts = [model.index(0, c).data() for c in range(model.columnCount())]
    assert "DEMO PATIENT" in texts and "DEMO0001" in texts and str(len(ct)) in texts
    assert f"receiving... {len(ct)} images" in texts  # progress count of the incoming study
    qtbot.waitUntil(lambda: "Last received: Demo study" in window.last_study_label.text(), timeout=5000)
    window.browser.select_study(window.browser_logic.rows[0].study_uid)
    assert window.browser.series.count() == 1  # series thumbnail strip of the selected study
    save_screenshot(window, screenshot_dir / "browser_received.png")
    window.browser.table.doubleClicked.emit(model.index(0, 0))
    qtbot.waitUntil(
        lambda: window.reading.viewports and all(vp.view is not None for vp in window.reading.viewports),
        timeout=30000,
    )
    stack = window.reading.viewports[0].view  # a CT opens as a 1x1 axial stack
    frame = stack.render_to_array(overlays=False)
    h, w = frame.shape[:2]
    assert frame[h // 2, w // 2, 0] in (127, 128)  # soft tissue 40 HU at W400/L40 in the body centre


def test_a_port_in_use_is_named_in_the_status_bar_and_the_settings_dialog(archive, make_window, qtbot):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    sup = ListenerSupervisor(archive.root, ListenerSettings(aet="HULUTEST", port=port))
    try:
        sup.start()
        window = make_window(archive, sup)
        cause = f"port {port} is in use by process {os.getpid()}"
        qtbot.waitUntil(lambda: cause in window.listener_label.text(), timeout=30000)
        assert sup.status().state is ListenerState.FAILED
        assert "exited" not in window.listener_label.text()  # the cause, not a restart count
        window.show_settings()
        qtbot.waitUntil(lambda: cause in window.settings_dialog.listener_status_label.text(), timeout=5000)
        window.settings_dialog.reject()
    finally:
        sup.stop()
        holder.close()


def test_tls_open_to_any_client_is_flagged_in_the_dialog_and_the_status_bar(
    archive, make_window, qtbot, tmp_path
):
    from tests.peers import PeerUnavailable, make_tls_material

    try:
        pki = make_tls_material(tmp_path / "pki")
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    window = make_window(archive)
    window.show_settings()
    dialog = window.settings_dialog
    assert not dialog.tls_warning.isVisible()
    dialog.inputs["listener.tls_cert"].setText(str(pki.server_cert))
    dialog.inputs["listener.tls_key"].setText(str(pki.server_key))
    assert dialog.tls_warning.isVisible() and "ANY computer" in dialog.tls_warning.text()
    assert dialog.try_apply() is None and "listener.tls_ca" in dialog.last_errors  # not without choosing
    dialog.inputs["listener.tls_no_client_auth"].setChecked(True)
    settings = dialog.try_apply()
    assert settings is not None and settings.listener.tls_no_client_auth
    dialog.inputs["listener.tls_ca"].setText(str(pki.ca_cert))
    assert not dialog.tls_warning.isVisible()
    dialog.reject()

    sup = ListenerSupervisor(
        archive.root, replace(settings.listener, aet="HULUTEST", port=free_port(), host="127.0.0.1")
    )
    try:
        sup.start()
        wait_listening(qtbot, sup)
        assert "TLS accepts ANY client" in sup.poll().describe()
    finally:
        sup.stop()
