"""The listener runs as its own process under the supervisor: restart after kill -9, adoption,
survival of window close, and a study sent by DCMTK storescu appearing live in the browser."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

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
    window.close()
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
