"""Fixtures for the app tests: a demo archive, the main window, and a screenshot folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dicom_net.archive import Archive
from dicom_net.synthetic import demo_study


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save screenshots for review: $HULU_TEST_ARTIFACTS or pytest's temp dir."""
    folder = Path(os.environ.get("HULU_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small demo study (CT 40 x 128^2, DX, US cine) written once per session."""
    return demo_study(tmp_path_factory.mktemp("demo"), ct_slices=40, ct_matrix=128).files


@pytest.fixture
def archive(_private_home: Path) -> Archive:
    from dicom_net.paths import default_archive_dir

    arch = Archive(default_archive_dir())
    yield arch
    arch.close()


@pytest.fixture
def demo_archive(archive: Archive, demo_files: list[Path]) -> Archive:
    for f in demo_files:
        archive.store_file(f)
    return archive


@pytest.fixture
def themed_app(qapp):
    from app.gui.theme import apply_dark_theme

    apply_dark_theme(qapp)
    return qapp


@pytest.fixture
def make_window(themed_app, qtbot):
    """Build a MainWindow on an archive (no listener unless a supervisor is given)."""
    from app.gui.main_window import MainWindow
    from app.services.settings_store import SettingsStore

    windows = []

    def make(archive: Archive, supervisor=None, size=(1400, 860)):
        window = MainWindow(archive, SettingsStore(), supervisor, poll_ms=200)
        # the harness closes it at the end: as File > Quit (keep receiving), without the question
        qtbot.addWidget(window, before_close_func=lambda w: setattr(w, "quit_keeps_listener", True))
        if size:
            window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()  # window shortcuts need the active window (Xvfb has no window manager)
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
        windows.append(window)
        return window

    yield make
    for w in windows:
        w.tasks.cancel_all()
        w.tasks.wait(10000)


def save_screenshot(widget, path: Path) -> Path:
    """Save what a widget shows (VTK canvases paint as QImages, so grab() includes them)."""
    from PySide6.QtWidgets import QApplication

    for _ in range(3):  # let pending layouts and deferred deletions run first
        QApplication.processEvents()
    widget.grab().save(str(path))
    return path


def rgb(view) -> np.ndarray:
    """The view's VTK image without overlays, RGB (H, W, 3)."""
    return view.render_to_array(overlays=False)
