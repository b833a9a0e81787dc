"""The main window: study browser and reading tabs, right-hand side dock, status bar, menus.

It wires the plain-Python parts together (archive, browser logic, reading session, listener
supervisor, settings store, task manager) and holds no business logic of its own.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.assistant.model_service import ModelState
from app.gui.reading_widget import ReadingWidget
from app.gui.study_browser import StudyBrowser
from app.gui.tasks import TaskHandle, TaskManager
from app.gui.ui_state import UiState
from app.reading.keymap import SHORTCUTS, VIEW_SHORTCUTS, help_html
from app.reading.layouts import Layout
from app.reading.session import ReadingSession
from app.reading.study_list import StudyBrowserLogic, study_files
from app.reading.thumbnails import ThumbnailCache
from app.services.importing import describe_import, import_into_archive
from app.services.listener_supervisor import ListenerState, ListenerSupervisor
from app.services.settings_model import AppSettings
from app.services.settings_store import SettingsStore
from app.services.status import gpu_memory_text, last_study_text, model_text
from dicom_net.archive import Archive

log = logging.getLogger(__name__)


def settings_problem_text(errors: dict[str, str]) -> str:
    """Status-bar text for stored settings that were invalid and replaced by their defaults."""
    listed = "; ".join(f"{key}: {message}" for key, message in errors.items())
    return f"Some saved settings were invalid and use their defaults ({listed}). Fix them in File > Settings."


class MainWindow(QMainWindow):
    """Studies | Reading tabs in the centre, AI chat/report dock on the right."""

    study_opened = Signal(str)
    study_closed = Signal(str)  # the reading tab no longer shows this study (another opened, or deleted)
    settings_changed = Signal(object)  # the new AppSettings, after Settings > OK
    pacs_nodes_changed = Signal()  # a PACS node was added, changed or removed in Settings

    def __init__(
        self,
        archive: Archive,
        store: SettingsStore,
        supervisor: ListenerSupervisor | None = None,
        *,
        poll_ms: int = 1000,
    ):
        super().__init__()
        self.setWindowTitle("Hulu-Med Workstation")
        self.setAcceptDrops(True)
        self.archive = archive
        self.store = store
        self.ui_state = UiState()
        self.preferred_layouts = self._stored_layouts()  # the reader's layout per modality
        self.settings: AppSettings = store.load()
        self.supervisor = supervisor
        self.stop_listener_on_exit = False
        self.quit_keeps_listener = False  # the user saw that the listener keeps receiving, and agreed
        self.quit_box: QMessageBox | None = None
        self.settings_dialog = None
        self.tasks = TaskManager(self)
        self.thumbnails = ThumbnailCache()
        self.session: ReadingSession | None = None

        self.browser_logic = StudyBrowserLogic(archive)
        self.browser = StudyBrowser(self.browser_logic, self.thumbnails, self, poll_ms=poll_ms)
        self.browser.open_requested.connect(self.open_study)
        self.browser.delete_requested.connect(self.delete_study)
        self.browser.export_requested.connect(self.export_study)
        self.browser.import_requested.connect(self.choose_import)
        self.browser.query_pacs_requested.connect(self.show_pacs_dialog)
        self.browser.studies_changed.connect(lambda _uids: self._update_demo_banner())
        self._select_on_arrival: str | None = None  # a retrieved study the browser does not show yet
        self.browser.studies_changed.connect(self._select_arrived)
        self.demo_banner = self._make_demo_banner()
        browser_page = QWidget(self)
        page_layout = QVBoxLayout(browser_page)
        page_layout.setContentsMargins(0, 0, 0, 0)
        page_layout.addWidget(self.demo_banner)
        page_layout.addWidget(self.browser, 1)

        self.reading = ReadingWidget(self.tasks, self.thumbnails, self)
        self.reading.status_message.connect(lambda text: self.statusBar().showMessage(text, 30000))
        self.tabs = QTabWidget(self)
        self.tabs.addTab(browser_page, "Studies")
        self.tabs.addTab(self.reading, "Reading")
        self.setCentralWidget(self.tabs)

        self.right_dock = QDockWidget("Assistant and report", self)
        self.right_dock.setObjectName("rightDock")
        self.side_tabs = QTabWidget(self.right_dock)
        self.side_placeholder = QLabel(
            "The AI assistant and the report editor appear here\nwhen they are installed.", self.side_tabs
        )
        self.side_placeholder.setObjectName("placeholder")
        self.side_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.side_placeholder.setWordWrap(True)
        self.side_tabs.addTab(self.side_placeholder, "Assistant")
        self.right_dock.setWidget(self.side_tabs)
        self.right_dock.setMinimumWidth(220)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.right_dock)

        self._build_status_bar()
        self._build_menus()
        self.model_state: ModelState | None = None  # the model service's, once one reports
        self.set_model_state(None)
        self.tasks.changed.connect(self._update_task_status)
        self.tasks.task_failed.connect(
            lambda title, msg: self.statusBar().showMessage(f"{title} failed: {msg}", 10000)
        )

        self.status_timer = QTimer(self)
        self.status_timer.setInterval(poll_ms)
        self.status_timer.timeout.connect(self.refresh_status)
        self.status_timer.start()
        self._restore_ui_state()
        self._update_demo_banner()
        self.refresh_status()
        if store.load_errors:
            self.statusBar().showMessage(settings_problem_text(store.load_errors), 60000)

    # -- side dock ----------------------------------------------------------------------------------
    def add_side_panel(self, widget: QWidget, title: str) -> int:
        """Mount a panel (AI chat, report editor) as a tab of the right-hand dock; returns its index."""
        if self.side_tabs.indexOf(self.side_placeholder) >= 0:
            self.side_tabs.removeTab(self.side_tabs.indexOf(self.side_placeholder))
            self.side_placeholder.hide()
        return self.side_tabs.addTab(widget, title)

    # -- status bar ---------------------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.listener_label = QLabel("Listener: -", self)
        self.listener_label.setObjectName("listenerStatus")
        self.last_study_label = QLabel(last_study_text(None), self)
        self.model_label = QLabel("", self)
        self.gpu_label = QLabel("CPU", self)
        self.task_label = QLabel("", self)
        self.task_progress = QProgressBar(self)
        self.task_progress.setMaximumWidth(180)
        self.task_cancel = QPushButton("Cancel", self)
        self.task_cancel.clicked.connect(self.tasks.cancel_all)
        # permanent widgets stay visible while transient messages show on the left
        for w in (
            self.task_label,
            self.task_progress,
            self.task_cancel,
            self.listener_label,
            self.last_study_label,
            self.model_label,
            self.gpu_label,
        ):
            bar.addPermanentWidget(w)
        self._update_task_status()

    def set_model_state(self, state: ModelState | None, detail: str = "") -> None:
        """Show the model service's state (not installed / loading / ready / error) in the status bar."""
        self.model_state = state
        self.model_label.setText(model_text(state, detail))

    def refresh_status(self) -> None:
        if self.supervisor is not None:
            status = self.supervisor.poll()
            self.listener_label.setText(status.describe())
            colour = {ListenerState.RUNNING: "#6fbf73", ListenerState.FAILED: "#e06060"}.get(
                status.state, "#e0a030"
            )
            self.listener_label.setStyleSheet(f"color: {colour}")
            dialog = self.settings_dialog
            if dialog is not None and dialog.isVisible():
                dialog.show_listener_status(status.describe(), status.state is ListenerState.FAILED)
        else:
            self.listener_label.setText("Listener: not supervised")
        self.last_study_label.setText(last_study_text(self.browser_logic.last_received))
        self.gpu_label.setText(gpu_memory_text())

    def _update_task_status(self) -> None:
        summary = self.tasks.summary()
        busy = summary is not None
        self.task_progress.setVisible(busy)
        self.task_cancel.setVisible(busy)
        if not busy:
            self.task_label.setText("")
            return
        title, done, total = summary
        self.task_label.setText(title)
        self.task_progress.setRange(0, max(total, 0))
        self.task_progress.setValue(min(done, total) if total else 0)

    # -- menus and shortcuts -------------------------------------------------------------------------
    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction("Import files...", self.choose_import)
        file_menu.addAction("Import folder...", lambda: self.choose_import(folder=True))
        file_menu.addAction("Query PACS...", self.show_pacs_dialog)
        file_menu.addAction("Create demo study", self.create_demo_study)
        file_menu.addSeparator()
        file_menu.addAction("Settings...", self.show_settings)
        file_menu.addSeparator()
        file_menu.addAction("Quit (keep receiving)", self.quit_keep_listener)
        file_menu.addAction("Quit and stop receiving", self.quit_and_stop_listener)
        listener_menu = menu.addMenu("&Listener")
        listener_menu.addAction("Start / restart", self.restart_listener)
        listener_menu.addAction("Stop receiving", self.stop_listener)
        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.right_dock.toggleViewAction())
        help_menu = menu.addMenu("&Help")
        help_menu.addAction("Keyboard shortcuts", self.show_shortcuts)

        handlers = self._shortcut_handlers()
        self.shortcut_actions: dict[str, QAction] = {}
        for sc in SHORTCUTS:
            action = QAction(sc.description, self)
            action.setShortcuts([QKeySequence(k) for k in sc.keys])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda _checked=False, fn=handlers[sc.action]: fn())
            self.addAction(action)
            self.shortcut_actions[sc.action] = action

    def _shortcut_handlers(self) -> dict:
        r = self.reading
        h = {
            **{sc.action: (lambda a=sc.action: r.apply(a)) for sc in VIEW_SHORTCUTS},
            "default_window": lambda: r.apply_preset_number(0),
            "cine_play": r.toggle_cine,
            "next_viewport": r.next_viewport,
            "layout_1x1": lambda: r.set_layout(Layout.ONE),
            "layout_1x2": lambda: r.set_layout(Layout.ONE_BY_TWO),
            "layout_2x2": lambda: r.set_layout(Layout.TWO_BY_TWO),
            "layout_mpr_3d": lambda: r.set_layout(Layout.MPR_3D),
            "toggle_mpr": r.toggle_mpr,
            "show_browser": lambda: self.tabs.setCurrentIndex(0),
            "import_files": self.choose_import,
            "settings": self.show_settings,
            "help": self.show_shortcuts,
            "next_series": lambda: self._step_series(1),
            "previous_series": lambda: self._step_series(-1),
        }
        for n in range(1, 10):
            h[f"wl_preset_{n}"] = lambda n=n: r.apply_preset_number(n)
        return h

    def _step_series(self, step: int) -> None:
        if not self.session or not self.session.series:
            return
        uids = [s.series_uid for s in self.session.series]
        current = self.session.slots[self.reading.active].series_uid
        i = uids.index(current) if current in uids else -1
        self.reading.assign(self.reading.active, uids[(i + step) % len(uids)])

    def show_shortcuts(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        text = QTextBrowser(dialog)
        text.setHtml(help_html())
        layout = QVBoxLayout(dialog)
        layout.addWidget(text)
        dialog.resize(520, 640)
        dialog.show()
        self.shortcuts_dialog = dialog
        return dialog

    # -- studies -------------------------------------------------------------------------------------
    def open_study(self, study_uid: str) -> ReadingSession | None:
        """Open a study in the reading tab with its default hanging (None: it is being deleted)."""
        if study_uid in self.browser_logic.busy:
            self.statusBar().showMessage(
                f"This study is {self.browser_logic.busy[study_uid]}; it cannot be opened.", 10000
            )
            return None
        closed = self.session.study_uid if self.session is not None else None
        self.session = ReadingSession(self.archive, study_uid, self.preferred_layouts)
        self.reading.open_session(self.session)
        if closed is not None and closed != study_uid:
            self.study_closed.emit(closed)
        self.tabs.setCurrentWidget(self.reading)
        self.study_opened.emit(study_uid)
        return self.session

    def delete_study(self, study_uid: str, confirm: bool = True) -> TaskHandle | None:
        """Delete a study from the archive on a worker thread; its row is greyed and marked
        "deleting..." until done, and opening, exporting or deleting it again is refused."""
        if study_uid in self.browser_logic.busy:
            self.statusBar().showMessage(
                f"This study is already {self.browser_logic.busy[study_uid]}.", 10000
            )
            return None
        if (
            confirm
            and QMessageBox.question(self, "Delete study", "Delete this study from the local archive?")
            != QMessageBox.StandardButton.Yes
        ):
            return None
        if self.session and self.session.study_uid == study_uid:
            self.session = None
            self.reading.close_session()
            self.study_closed.emit(study_uid)
        elif self.session:
            self.session.forget_prior(study_uid)  # a prior shown for comparison goes off screen
        self.browser_logic.mark_busy(study_uid, "deleting")
        self.browser.table.clearSelection()
        self.browser.refresh()

        def delete(progress, cancel) -> int:
            if cancel.is_set():  # cancelled before it started: nothing removed
                return 0
            progress(0, 0, "removing files")  # one index transaction, then one folder: no partial stop
            return self.archive.delete_study(study_uid)

        def finished(_result=None) -> None:
            self.browser_logic.clear_busy(study_uid)
            self.browser.refresh()
            self.browser.poll()
            self._update_demo_banner()

        def failed(message: str) -> None:
            finished()
            self.statusBar().showMessage(f"The study was not deleted: {message}", 15000)

        return self.tasks.submit(
            "Delete study", delete, on_done=finished, on_error=failed, on_cancelled=finished
        )

    def export_study(self, study_uid: str, as_zip: bool, destination: Path | None = None) -> None:
        """Anonymised export of a study to a folder or zip, in the background."""
        from app.services.anonymize import export_anonymized

        if destination is None:
            last = str(self.ui_state.value("last_folder", str(Path.home())))
            if as_zip:
                name, _ = QFileDialog.getSaveFileName(self, "Export anonymised study", last, "Zip (*.zip)")
            else:
                name = QFileDialog.getExistingDirectory(self, "Export anonymised study to folder", last)
            if not name:
                return
            destination = Path(name)
            self.ui_state.set_value("last_folder", str(destination.parent))
        if study_uid in self.browser_logic.busy:
            self.statusBar().showMessage(
                f"This study is {self.browser_logic.busy[study_uid]}; it cannot be exported.", 10000
            )
            return
        files = study_files(self.archive, study_uid)
        self.tasks.submit(
            "Anonymised export",
            lambda progress, cancel: export_anonymized(files, destination, progress=progress, cancel=cancel),
            on_done=lambda names: self.statusBar().showMessage(
                f"Exported {len(names)} images to {destination}", 10000
            ),
        )

    # -- import (menu, drag and drop, demo) -----------------------------------------------------------
    def choose_import(self, folder: bool = False) -> None:
        last = str(self.ui_state.value("last_folder", str(Path.home())))
        if folder:
            name = QFileDialog.getExistingDirectory(self, "Import folder", last)
            paths = [name] if name else []
        else:
            paths, _ = QFileDialog.getOpenFileNames(self, "Import DICOM files or zip", last)
        if paths:
            self.ui_state.set_value("last_folder", str(Path(paths[0]).parent))
            self.import_paths([Path(p) for p in paths])

    def import_paths(self, paths: list[Path]) -> None:
        """Import files, folders and zip archives in the background; the browser picks them up."""
        self.tasks.submit(
            "Import",
            lambda progress, cancel: import_into_archive(
                self.archive, paths, progress=progress, cancel=cancel
            ),
            on_done=self._import_done,
        )

    def _import_done(self, summary) -> None:
        self.browser.poll()
        self.statusBar().showMessage(describe_import(summary), 10000)
        self._update_demo_banner()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    def _make_demo_banner(self) -> QWidget:
        banner = QWidget(self)
        layout = QHBoxLayout(banner)
        label = QLabel(
            "The local archive is empty. Studies sent to this workstation appear here as they "
            "arrive. To try the workstation now, create a generated demo study "
            "(CT volume, chest radiograph, ultrasound cine).",
            banner,
        )
        label.setWordWrap(True)
        button = QPushButton("Create demo study", banner)
        button.clicked.connect(self.create_demo_study)
        layout.addWidget(label, 1)
        layout.addWidget(button)
        return banner

    def _update_demo_banner(self) -> None:
        self.demo_banner.setVisible(self.browser_logic.is_empty())

    def create_demo_study(self) -> None:
        """Generate the demo study and import it (background task)."""
        from dicom_net.synthetic import demo_study

        def make(progress, cancel):
            folder = Path(tempfile.mkdtemp(prefix="hulu-demo-"))
            try:
                progress(0, 0, "generating")
                demo_study(folder)
                return import_into_archive(self.archive, [folder], progress=progress, cancel=cancel)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        self.demo_banner.setVisible(False)
        self.tasks.submit("Demo study", make, on_done=self._import_done)

    # -- dialogs ---------------------------------------------------------------------------------------
    def show_settings(self) -> None:
        from app.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.store, parent=self)
        dialog.applied.connect(self.apply_settings)
        dialog.pacs_nodes_changed.connect(self.pacs_nodes_changed)
        dialog.open()
        self.settings_dialog = dialog
        self.refresh_status()  # the listener's state in the dialog at once

    def apply_settings(self, settings: AppSettings) -> None:
        old = self.settings
        self.settings = settings
        if self.supervisor is not None and settings.listener != old.listener:
            self.supervisor.restart_with(settings.listener)
        self.refresh_status()
        self.settings_changed.emit(settings)

    def show_pacs_dialog(self) -> None:
        from app.gui.pacs_dialog import PacsDialog

        dialog = PacsDialog(self.tasks, self.archive, self.settings.listener.aet, parent=self)
        dialog.retrieved.connect(self._retrieved)
        dialog.show()
        self.pacs_dialog = dialog

    def _retrieved(self, study_uid: str) -> None:
        """Select the retrieved study; after a C-MOVE the listener process may index it a moment
        after the retrieve ends, so it is selected when the browser first shows it."""
        self.browser.poll()
        self._select_on_arrival = None if self.browser.select_study(study_uid) else study_uid

    def _select_arrived(self, changed: list[str]) -> None:
        if self._select_on_arrival in changed and self.browser.select_study(self._select_on_arrival):
            self._select_on_arrival = None

    # -- listener ----------------------------------------------------------------------------------------
    def restart_listener(self) -> None:
        if self.supervisor is not None:
            self.supervisor.restart_with(self.settings.listener)
            self.refresh_status()

    def stop_listener(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.refresh_status()

    def quit_keep_listener(self) -> None:
        """Quit, leaving the listener receiving (chosen knowingly: no question asked)."""
        self.quit_keeps_listener = True
        self.close()

    def quit_and_stop_listener(self) -> None:
        self.stop_listener_on_exit = True
        self.stop_listener()
        self.close()

    def _listener_outlives_window(self) -> bool:
        return (
            self.supervisor is not None
            and not self.stop_listener_on_exit
            and not self.quit_keeps_listener
            and self.supervisor.status().state is ListenerState.RUNNING
        )

    def _ask_about_listener(self) -> None:
        if self.quit_box is not None and self.quit_box.isVisible():
            return
        box = QMessageBox(QMessageBox.Icon.Information, "The listener keeps receiving", "", parent=self)
        box.setText(self.supervisor.keeps_receiving_notice())
        keep = box.addButton("Quit, keep receiving", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop receiving and quit", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)

        def chosen(button: object) -> None:
            if button is keep:
                self.quit_keep_listener()
            elif button is stop:
                self.quit_and_stop_listener()

        box.buttonClicked.connect(chosen)
        box.open()
        self.quit_box = box

    # -- window state ---------------------------------------------------------------------------------
    def _restore_ui_state(self) -> None:
        geometry = self.ui_state.bytes_value("geometry")
        state = self.ui_state.bytes_value("window_state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 920)
        if state is not None:
            self.restoreState(state)
        else:
            self.resizeDocks([self.right_dock], [380], Qt.Orientation.Horizontal)
        splitter = self.ui_state.bytes_value("browser_splitter")
        if splitter is not None:
            self.browser.splitter.restoreState(splitter)

    def _stored_layouts(self) -> dict[str, Layout]:
        """Layouts last chosen per modality ("CT=MPR + 3D;MR=1x1"); unknown entries are skipped."""
        stored, names = str(self.ui_state.value("layouts", "") or ""), {lay.value: lay for lay in Layout}
        pairs = (item.split("=", 1) for item in stored.split(";") if "=" in item)
        return {modality: names[value] for modality, value in pairs if value in names}

    def save_ui_state(self) -> None:
        layouts = ";".join(
            f"{modality}={layout.value}" for modality, layout in self.preferred_layouts.items()
        )
        self.ui_state.set_value("layouts", layouts)
        self.ui_state.set_value("geometry", QByteArray(self.saveGeometry()))
        self.ui_state.set_value("window_state", QByteArray(self.saveState()))
        self.ui_state.set_value("browser_splitter", QByteArray(self.browser.splitter.saveState()))
        self.ui_state.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing keeps the listener running unless the user chose to stop receiving. Closing the
        window (title bar, Alt+F4) while the listener runs first tells the user so and how to stop
        it; the File menu's two Quit entries say it in their names and do not ask."""
        if self._listener_outlives_window():
            event.ignore()
            self._ask_about_listener()
            return
        self.save_ui_state()
        self.status_timer.stop()
        self.browser.timer.stop()
        self.tasks.cancel_all()
        self.tasks.wait(10000)
        if self.stop_listener_on_exit and self.supervisor is not None:
            self.supervisor.stop()
        super().closeEvent(event)
