"""`hulu-workstation` with no sub-command: open the main window and keep the listener running.

Side panels: each module in :data:`SIDE_PANEL_MODULES` that exists and defines ``mount(window)``
is called with the :class:`MainWindow`; it adds its widgets with ``window.add_side_panel(widget,
title)`` and may report model state with ``window.set_model_state(...)``. Without them the
right-hand dock shows a placeholder.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading

from app.listener_supervisor import ListenerSupervisor
from app.settings_store import SettingsStore
from dicom_net.archive import Archive
from dicom_net.paths import default_archive_dir

log = logging.getLogger(__name__)

SIDE_PANEL_MODULES = ("app.chat_panel", "app.report_editor")


def mount_side_panels(window) -> list[str]:
    """Mount the optional AI chat and report editor panels; returns the modules mounted."""
    mounted = []
    for name in SIDE_PANEL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mount = getattr(module, "mount", None)
        if callable(mount):
            mount(window)
            mounted.append(name)
    return mounted


def _probe_torch_in_background() -> None:
    """Import torch off the GUI thread so the status bar can show GPU memory without a startup stall."""

    def probe() -> None:
        try:
            importlib.import_module("torch")
        except Exception as exc:  # noqa: BLE001 - no torch: the status bar says CPU
            log.info("torch unavailable for GPU status: %s", type(exc).__name__)

    threading.Thread(target=probe, name="torch-probe", daemon=True).start()


def build_window(*, start_listener: bool = True, create_demo: bool | None = None):
    """Create the archive, settings, listener supervisor and main window (QApplication must exist)."""
    from app.main_window import MainWindow

    store = SettingsStore()
    settings = store.load()
    archive = Archive(default_archive_dir())
    supervisor = ListenerSupervisor(archive.root, settings.listener)
    if start_listener:
        supervisor.start()
    window = MainWindow(archive, store, supervisor)
    mount_side_panels(window)
    if create_demo is None:
        create_demo = settings.general.create_demo_if_empty or os.environ.get("HULU_CREATE_DEMO") == "1"
    if create_demo and window.browser_logic.is_empty():
        window.create_demo_study()
    return window


def run_gui(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from app.theme import apply_dark_theme, configure_high_dpi

    app = QApplication.instance()
    if app is None:
        configure_high_dpi()  # only possible before the application exists
        app = QApplication(sys.argv[:1])
    app.setApplicationName("Hulu-Med Workstation")
    app.setOrganizationName("hulu-workstation")
    apply_dark_theme(app)
    window = build_window(
        start_listener=not getattr(args, "no_listener", False),
        create_demo=True if getattr(args, "demo", False) else None,
    )
    window.show()
    _probe_torch_in_background()
    return app.exec()
