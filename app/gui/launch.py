"""`hulu-workstation` with no sub-command: the composition root of the desktop app.

:func:`build_workstation` creates every service explicitly (settings, archive, listener supervisor,
model service) and hands each to the widgets that use it: the main window, the chat panel and the
report editor share one model service. Nothing is attached to the window after the fact; the
returned :class:`Workstation` holds the parts.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from app.assistant.model_service import ModelService
from app.gui.chat_panel import ChatPanel, attach_chat_panel
from app.gui.lock import WorkstationLock
from app.gui.main_window import MainWindow
from app.gui.report_editor import PredraftSwitch, ReportEditor, attach_report_editor
from app.services.delivery_service import ensure_delivery_service
from app.services.listener_supervisor import ListenerSupervisor
from app.services.settings_store import SettingsStore
from dicom_net.archive import Archive
from dicom_net.paths import default_archive_dir

log = logging.getLogger(__name__)


def _probe_torch_in_background() -> None:
    """Import torch off the GUI thread so the status bar can show GPU memory without a startup stall."""

    def probe() -> None:
        try:
            importlib.import_module("torch")
        except Exception as exc:  # noqa: BLE001 - no torch: the status bar says CPU
            log.info("torch unavailable for GPU status: %s", type(exc).__name__)

    threading.Thread(target=probe, name="torch-probe", daemon=True).start()


@dataclass
class Workstation:
    """The main window and the panels and services built for it."""

    window: MainWindow
    model_service: ModelService
    chat_panel: ChatPanel
    report_editor: ReportEditor
    predrafting: PredraftSwitch
    lock: WorkstationLock


class _StateBridge(QObject):
    """Carries model-state changes from the loader thread to the GUI thread."""

    changed = Signal(object)


def _detail(service: ModelService, state) -> str:
    """Status-bar detail: CPU slow mode once ready on the CPU, the loading phase while loading."""
    if state.ready and service.slow_mode:
        return "CPU slow mode"
    if state.kind == "loading" and ": " in state.message:
        return state.message.rsplit(": ", 1)[1].rstrip(" .")
    return ""


def build_model_service(window: MainWindow) -> ModelService:
    """One model service per window, loading in the background from Settings > Model; its state
    is shown in the status bar and it follows settings changes."""
    settings = window.settings.model
    service = ModelService(
        settings.folder or None, device=settings.device, quantization=settings.quantization or "auto"
    )
    bridge = _StateBridge(window)
    bridge.changed.connect(lambda state: window.set_model_state(state, _detail(service, state)))
    service.on_state(bridge.changed.emit)
    window.set_model_state(service.state, _detail(service, service.state))
    window.destroyed.connect(lambda *_: service.close())

    def settings_changed(new_settings) -> None:
        model = new_settings.model
        wanted = (model.folder or None, model.device, model.quantization or "auto")
        if wanted != (str(service.folder) if service.folder else None, service.device, service.quantization):
            service.reconfigure(wanted[0], device=wanted[1], quantization=wanted[2])

    window.settings_changed.connect(settings_changed)
    service.start_loading()
    return service


def attach_assistant(window: MainWindow) -> Workstation:
    """Build the model service and the chat and report panels for ``window``."""
    service = build_model_service(window)
    chat_panel = attach_chat_panel(window, service)
    report_editor, predrafting = attach_report_editor(window, service)
    return Workstation(window, service, chat_panel, report_editor, predrafting, attach_idle_lock(window))


def attach_idle_lock(window: MainWindow) -> WorkstationLock:
    """Lock the window after Settings > General > lock-after minutes without input."""
    lock = WorkstationLock(window, timeout_ms=window.settings.general.lock_after_minutes * 60_000)
    window.settings_changed.connect(lambda s: lock.set_timeout_ms(s.general.lock_after_minutes * 60_000))
    return lock


def build_workstation(*, start_listener: bool = True, create_demo: bool | None = None) -> Workstation:
    """Create the archive, settings, listener supervisor, main window and its panels
    (QApplication must exist)."""
    store = SettingsStore()
    settings = store.load()
    archive = Archive(default_archive_dir())
    supervisor = ListenerSupervisor(archive.root, settings.listener)
    if start_listener:
        supervisor.start()
        ensure_delivery_service()  # signed reports keep going to the RIS/PACS while the app is closed
    window = MainWindow(archive, store, supervisor)
    workstation = attach_assistant(window)
    if create_demo is None:
        create_demo = settings.general.create_demo_if_empty or os.environ.get("HULU_CREATE_DEMO") == "1"
    if create_demo and window.browser_logic.is_empty():
        window.create_demo_study()
    return workstation


def run_gui(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from app.gui.theme import apply_dark_theme, configure_high_dpi

    app = QApplication.instance()
    if app is None:
        configure_high_dpi()  # only possible before the application exists
        app = QApplication(sys.argv[:1])
    app.setApplicationName("Hulu-Med Workstation")
    app.setOrganizationName("hulu-workstation")
    apply_dark_theme(app)
    workstation = build_workstation(
        start_listener=not getattr(args, "no_listener", False),
        create_demo=True if getattr(args, "demo", False) else None,
    )
    workstation.window.show()
    _probe_torch_in_background()
    return app.exec()
