"""The report editor dock: draft with AI, edit, attach key images, sign, export, outbox status.

A Qt view over :class:`app.reporting.workflow.ReportWorkflow`. AI-written text is shown on an
amber background (tooltip "AI-written, not reviewed") character by character until the
radiologist retypes those characters or presses "Accept AI text" (which asks first, naming how
many passages it accepts); signing refuses while any remains. Signing asks for a workstation
user's password every time (:class:`app.gui.credentials.SignDialog`); the signer is that user.
Pasted text is cleaned like any text entering the report. The draft streams from a worker
thread into read-only editors; nothing is sent until a signed report's export button is pressed.
With Settings > General > pre-draft on, new studies are pre-drafted in the background while the
model is idle (drafts only: never signed or sent). Settings changes apply without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPixmap, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.assistant.chat import AI_NOTICE, ScreenContext, default_scope, offered_scopes
from app.assistant.drafting import DraftSettings, draft_report
from app.assistant.model_service import ModelService
from app.gui.credentials import SignDialog
from app.gui.tasks import TaskHandle, TaskManager
from app.reading.study_list import study_files
from app.reporting.delivery import Routes
from app.reporting.key_images import capture_key_image
from app.reporting.outbox import State, attention
from app.reporting.pdf import pdf_file_name
from app.reporting.report import ReportError, ReportStatus, Span, StudyInfo, display_name, format_dicom_date
from app.reporting.templates import best_template, load_templates
from app.reporting.users import AuthenticationError, UserError
from app.reporting.workflow import PdfJob, ReportWorkflow

log = logging.getLogger(__name__)
AI_BACKGROUND = QColor("#7a4a00")
AI_TOOLTIP = "AI-written, not reviewed: edit it or press Accept AI text"
SECTIONS = (("findings", "Findings"), ("impression", "Impression"))


def patient_line(info: StudyInfo) -> str:
    """Who and what the report is for, as the radiologist must see it before signing."""
    name = ", ".join(p for p in info.patient_name.split("^")[:2] if p) or "(no name)"
    born = format_dicom_date(info.patient_birth_date)
    patient = f"{name} - ID {info.patient_id or '(none)'}" + (f" - born {born}" if born else "")
    patient += f" {info.patient_sex}" if info.patient_sex else ""
    study_date = format_dicom_date(info.study_datetime)
    study = f"{info.study_description or info.modality or 'Study'}" + (
        f" of {study_date}" if study_date else ""
    )
    return f"{patient}\n{study} - accession {info.accession_number or '(none)'}"


class ReportEditor(QWidget):
    """``context_provider``: what the active viewport shows; ``ris_address``: HOST:PORT or "" (no
    RIS, or sending to it disabled); ``ris_msh``: the MSH sender/receiver names from Settings > RIS."""

    draft_updated = Signal()
    draft_finished = Signal(str)  # error text or ""

    def __init__(
        self,
        service: ModelService,
        workflow: ReportWorkflow,
        context_provider: Callable[[], ScreenContext | None],
        parent: QWidget | None = None,
        *,
        ris_address: Callable[[], str] = lambda: "",
        ris_msh: Callable[[], dict[str, str]] = dict,
        pacs_nodes: Callable[[], list[str]] = list,
        draft_settings: DraftSettings | None = None,
        tasks: TaskManager | None = None,
    ):
        super().__init__(parent)
        self.tasks = tasks if tasks is not None else TaskManager(self)
        self.pdf_task: TaskHandle | None = None  # the PDF export running now, if any
        self.service = service
        self.workflow = workflow
        self.context_provider = context_provider
        self.ris_address = ris_address
        self.ris_msh = ris_msh
        self.pacs_nodes = pacs_nodes
        self.draft_settings = draft_settings or DraftSettings(max_new_tokens=768)
        self._rendering = False
        self._draft_thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._drafting = None  # (report, audit) the running draft writes into
        self.templates = load_templates()

        self.notice = QLabel(AI_NOTICE + " AI text is marked until you edit or accept it.", self)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("background:#5a3d00;color:#ffe0a0;padding:4px;border-radius:3px;")
        self.study_label = QLabel("No study open.", self)
        self.study_label.setObjectName("reportPatient")
        self.study_label.setStyleSheet("font-weight:bold;")
        self.status_label = QLabel(self)
        self.message_label = QLabel(self)
        self.message_label.setWordWrap(True)
        self.template_box = QComboBox(self)
        self.template_button = QPushButton("Apply template", self)
        self.draft_button = QPushButton("Draft with AI", self)
        self.stop_button = QPushButton("Stop", self)
        self.accept_button = QPushButton("Accept AI text", self)
        self.editors: dict[str, QTextEdit] = {}
        for key, _title in SECTIONS:
            editor = QTextEdit(self)
            editor.setAcceptRichText(False)
            editor.textChanged.connect(lambda k=key: self._edited(k))
            self.editors[key] = editor
        self.key_button = QPushButton("Add key image", self)
        self.key_list = QListWidget(self)
        self.key_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.key_list.setMaximumHeight(90)
        self.sign_buttons = {
            ReportStatus.PRELIMINARY: QPushButton("Sign preliminary", self),
            ReportStatus.FINAL: QPushButton("Sign final", self),
            ReportStatus.CORRECTED: QPushButton("Sign correction", self),
        }
        self.amend_button = QPushButton("Amend", self)
        self.ris_button = QPushButton("Send to RIS", self)
        self.pacs_box = QComboBox(self)
        self.pacs_button = QPushButton("Send SR to PACS", self)
        self.pdf_button = QPushButton("Export PDF", self)
        self.outbox_list = QListWidget(self)
        self.outbox_list.setMaximumHeight(80)
        self.retry_button = QPushButton("Retry failed", self)
        self.sign_dialog: SignDialog | None = None  # while it asks for the signer's password
        self.accept_box: QMessageBox | None = None  # while it asks to confirm accepting AI text
        self.pdf_folder = _documents_folder()  # where the last PDF was saved

        layout = QVBoxLayout(self)
        layout.addWidget(self.notice)
        layout.addWidget(self.study_label)
        layout.addWidget(self.status_label)
        row = QHBoxLayout()
        for w in (
            self.template_box,
            self.template_button,
            self.draft_button,
            self.stop_button,
            self.accept_button,
        ):
            row.addWidget(w)
        layout.addLayout(row)
        for key, title in SECTIONS:
            layout.addWidget(QLabel(f"<b>{title}</b>", self))
            layout.addWidget(self.editors[key], 1)
        layout.addWidget(self.key_button)
        layout.addWidget(self.key_list)
        grid = QGridLayout()
        grid.addWidget(self.sign_buttons[ReportStatus.PRELIMINARY], 0, 0)
        grid.addWidget(self.sign_buttons[ReportStatus.FINAL], 0, 1)
        grid.addWidget(self.amend_button, 1, 0)
        grid.addWidget(self.sign_buttons[ReportStatus.CORRECTED], 1, 1)
        grid.addWidget(self.ris_button, 2, 0)
        grid.addWidget(self.pdf_button, 2, 1)
        grid.addWidget(self.pacs_box, 3, 0)
        grid.addWidget(self.pacs_button, 3, 1)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Outbox", self))
        layout.addWidget(self.outbox_list)
        layout.addWidget(self.retry_button)
        layout.addWidget(self.message_label)

        self.template_button.clicked.connect(self.apply_template)
        self.draft_button.clicked.connect(self.start_draft)
        self.stop_button.clicked.connect(self.stop_draft)
        self.accept_button.clicked.connect(self.accept_ai)
        self.key_button.clicked.connect(self.add_key_image)
        for status, button in self.sign_buttons.items():
            button.clicked.connect(lambda _=False, s=status: self.sign(s))
        self.amend_button.clicked.connect(self.amend)
        self.ris_button.clicked.connect(self.send_to_ris)
        self.pacs_button.clicked.connect(lambda: self.send_to_pacs(self.pacs_box.currentText()))
        self.pdf_button.clicked.connect(lambda: self.export_pdf(None))
        self.retry_button.clicked.connect(self.retry_failed)
        self.draft_updated.connect(self._render)
        self.draft_finished.connect(self._draft_done)
        service.on_state(lambda _state: QTimer.singleShot(0, self, self._update_buttons))
        self.save_timer = QTimer(self)
        self.save_timer.setSingleShot(True)
        self.save_timer.setInterval(800)
        self.save_timer.timeout.connect(self.flush)
        self.outbox_timer = QTimer(self)
        self.outbox_timer.setInterval(1000)
        self.outbox_timer.timeout.connect(self.refresh_outbox)
        self.outbox_timer.start()
        self._render()

    # -- study ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Save pending edits now."""
        self.save_timer.stop()
        if self.workflow.report is not None:
            self.workflow.save()

    def close_study(self, reason: str) -> None:
        """Show no report (with ``reason``), e.g. when the opened study cannot be read."""
        self.flush()
        self.stop_draft()
        self.workflow.report = self.workflow.audit = None
        self.study_label.setText("No study open.")
        self.key_list.clear()
        self._say(reason, error=True)
        self._render()

    def open_study(self, info: StudyInfo) -> None:
        self.flush()
        if self._draft_thread is not None:
            self.stop_draft()  # it ends in the background and saves the report it was drafting
        self.study_label.setText(patient_line(info))
        self.key_list.clear()
        self._say("")  # a message about the previous study's report must not stay
        try:
            report = self.workflow.open_study(info)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged record: left on disk as is
            self.workflow.report = self.workflow.audit = None  # never the previous study's report
            log.error(
                "report editor: report of study %s unreadable (%s)",
                info.study_instance_uid,
                type(exc).__name__,
            )
            self._say(
                f"The saved report of this study cannot be read ({type(exc).__name__}: {exc}). "
                "It is left on disk unchanged; ask your administrator to restore it.",
                error=True,
            )
            self._render()
            return
        self.template_box.clear()
        chosen = best_template(self.templates, info.modality, info.body_part)
        for template in self.templates:
            self.template_box.addItem(template.name, template)
        if chosen is not None:
            self.template_box.setCurrentText(chosen.name)
        self.refresh_pacs_nodes()
        for name, label in self.workflow.key_labels.items():  # the report's saved key images
            self._show_key_image(label, self.workflow.key_pixels[name])
        log.info("report editor: study %s, report %s", info.study_instance_uid, report.report_id)
        self._render()

    # -- rendering -----------------------------------------------------------------------------
    def _render(self) -> None:
        """Show the report: text with AI spans marked, status, enabled buttons."""
        report = self.workflow.report
        self._rendering = True
        try:
            for key, editor in self.editors.items():
                spans = report.spans(key) if report else []
                if editor.toPlainText() != "".join(s.text for s in spans):
                    editor.clear()
                    cursor = QTextCursor(editor.document())
                    for span in spans:
                        cursor.insertText(span.text, self._format(span))
                else:
                    self._apply_formats(editor, spans)
                editor.setReadOnly(report is None or not report.editable or self._draft_thread is not None)
        finally:
            self._rendering = False
        self._update_buttons()

    @staticmethod
    def _format(span: Span) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if span.ai:
            fmt.setBackground(AI_BACKGROUND)
            fmt.setToolTip(AI_TOOLTIP)
        return fmt

    def _apply_formats(self, editor: QTextEdit, spans: list[Span]) -> None:
        position = 0
        for span in spans:
            cursor = QTextCursor(editor.document())
            cursor.setPosition(position)
            cursor.setPosition(position + len(span.text), QTextCursor.MoveMode.KeepAnchor)
            cursor.setCharFormat(self._format(span))
            position += len(span.text)

    def ai_marked_text(self, section: str) -> str:
        """Text shown with the AI background in an editor (what a reader sees as unreviewed)."""
        document = self.editors[section].document()
        marked, block = [], document.begin()
        while block.isValid():
            iterator = block.begin()
            while not iterator.atEnd():
                fragment = iterator.fragment()
                if fragment.charFormat().background().color() == AI_BACKGROUND:
                    marked.append(fragment.text())
                iterator += 1
            block = block.next()
        return "".join(marked)

    def _update_buttons(self) -> None:
        report = self.workflow.report
        drafting = self._draft_thread is not None
        status = report.status if report else None
        edited = report is not None and report.edited_since_signed
        signed = (
            report is not None
            and status is not ReportStatus.DRAFT
            and not report.amendment_open
            and not edited
        )
        self.status_label.setText(
            ""
            if report is None
            else f"Status: {status.value}"
            + (" (amendment open)" if report.amendment_open else "")
            + (f" - signed by {display_name(report.radiologist)}" if report.radiologist else "")
            + (" - changed since signed: sign again before sending" if edited else "")
            + (
                f" - {report.unreviewed_ai_spans()} AI passage(s) to review"
                if report.unreviewed_ai_spans()
                else ""
            )
        )
        can_edit = report is not None and report.editable and not drafting
        self.draft_button.setEnabled(can_edit and status is ReportStatus.DRAFT and self.service.state.ready)
        self.draft_button.setToolTip("" if self.service.state.ready else self.service.state.message)
        self.stop_button.setEnabled(drafting)
        self.accept_button.setEnabled(can_edit and report.unreviewed_ai_spans() > 0)
        self.template_button.setEnabled(can_edit)
        self.key_button.setEnabled(can_edit)
        self.sign_buttons[ReportStatus.PRELIMINARY].setEnabled(
            can_edit and (status is ReportStatus.DRAFT or (status is ReportStatus.PRELIMINARY and edited))
        )
        self.sign_buttons[ReportStatus.FINAL].setEnabled(
            can_edit and status in (ReportStatus.DRAFT, ReportStatus.PRELIMINARY)
        )
        self.sign_buttons[ReportStatus.CORRECTED].setEnabled(
            can_edit and bool(report and report.amendment_open)
        )
        self.amend_button.setEnabled(signed and status in (ReportStatus.FINAL, ReportStatus.CORRECTED))
        self.ris_button.setEnabled(signed and bool(self.ris_address()))
        self.ris_button.setToolTip(
            "" if self.ris_address() else "Enable the RIS and set its host in Settings > RIS"
        )
        self.pacs_button.setEnabled(signed and self.pacs_box.count() > 0)
        self.pdf_button.setEnabled(report is not None and not drafting and self.pdf_task is None)

    def _say(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color:#ff8080" if error else "")
        self.message_label.setText(text)

    # -- editing -------------------------------------------------------------------------------
    def _edited(self, section: str) -> None:
        report = self.workflow.report
        if self._rendering or report is None or not report.editable or self._draft_thread is not None:
            return
        text = self.editors[section].toPlainText()
        if text == report.text(section):
            return
        report.set_text(section, text)
        self.save_timer.start()  # saved when typing pauses (atomic write + fsync per keystroke is too slow)
        editor = self.editors[section]
        if report.text(section) != text:  # cleaned (e.g. a pasted vertical tab): show what is kept
            position = editor.textCursor().position()
            self._render()
            cursor = editor.textCursor()
            cursor.setPosition(min(position, len(report.text(section))))
            editor.setTextCursor(cursor)
            return
        self._rendering = True
        try:
            self._apply_formats(editor, report.spans(section))
        finally:
            self._rendering = False
        self._update_buttons()

    def accept_ai(self) -> None:
        """Accept every unreviewed AI passage as the radiologist's, after a confirmation that
        says how many passages that is."""
        report = self.workflow.report
        if report is None or not report.unreviewed_ai_spans():
            return
        passages = report.unreviewed_ai_spans()
        self.accept_box = QMessageBox(
            QMessageBox.Icon.Question,
            "Accept AI text",
            f"Accept {passages} AI-written passage(s) as your own text, unchanged?\n"
            "They stay recorded as AI-written, and the exports say so.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        self.accept_box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        try:
            if self.accept_box.exec() != QMessageBox.StandardButton.Yes:
                return
        finally:
            self.accept_box = None
        count = report.accept_ai()
        self.workflow.audit.add_event("accepted AI text", passages=str(count))
        self.workflow.save()
        self._render()

    def apply_template(self) -> None:
        template = self.template_box.currentData()
        try:
            self.workflow.apply_template(template)
        except ReportError as exc:
            self._say(str(exc), error=True)
        self._render()

    # -- drafting ------------------------------------------------------------------------------
    def start_draft(self) -> bool:
        report, context = self.workflow.report, self.context_provider()
        if report is None or context is None:
            self._say("Open a series of the study to draft from it.", error=True)
            return False
        if not self.service.state.ready:
            self._say(self.service.state.message, error=True)
            return False
        depth = context.volume.voxels.shape[0]
        kind = (
            None
            if depth < 2
            else (
                "volume"
                if context.volume.metadata.get("has_patient_geometry", True)
                and not context.volume.frame_start_times_ms
                else None
            )
        )
        scope = default_scope(context, kind, slices=32)
        from app.assistant.ai_inputs import visual_item_for
        from app.assistant.chat import sent_input

        self._cancel = threading.Event()
        cancel, audit, settings = self._cancel, self.workflow.audit, self.draft_settings
        self._drafting = (report, audit)
        volume = context.volume

        def work() -> None:
            try:
                item = visual_item_for(volume, scope.view())
                draft_report(
                    self.service,
                    report,
                    audit,
                    [item],
                    [sent_input(scope, item.sampled_indices)],
                    settings=settings,
                    on_update=self.draft_updated.emit,
                    cancel=cancel,
                )
                self.draft_finished.emit("")
            except Exception as exc:  # shown in the panel; the report keeps what streamed
                log.exception("draft failed")
                self.draft_finished.emit(str(exc))

        self._draft_thread = threading.Thread(target=work, name="report-draft", daemon=True)
        self._say("Drafting ... (AI text appears marked)")
        self._draft_thread.start()
        self._render()
        return True

    def stop_draft(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def wait_draft(self, timeout: float | None = None) -> None:
        if self._draft_thread is not None:
            self._draft_thread.join(timeout)

    def _draft_done(self, error: str) -> None:
        if self._draft_thread is not None:
            self._draft_thread.join()
        self._draft_thread = None
        self._cancel = None
        drafted, self._drafting = self._drafting, None
        if drafted is not None:  # the drafted report, even if another study is open by now
            self.workflow.store.save(*drafted)
        if drafted is not None and drafted[0] is not self.workflow.report:
            self._say("The AI draft of the previous study was stopped; what it wrote is kept, marked AI.")
        else:
            self._say(
                f"Draft failed: {error}" if error else "Draft ready: review, edit or accept the AI text.",
                error=bool(error),
            )
        self._render()

    # -- key images, signing, export -----------------------------------------------------------
    def add_key_image(self) -> None:
        context = self.context_provider()
        if context is None or self.workflow.report is None:
            return
        if "image" not in offered_scopes(context) or context.plane == "oblique":
            self._say("Activate a 2D pane in a standard plane to keep its image as a key image.", error=True)
            return
        scope = default_scope(context, "image")
        key, pixels = capture_key_image(context, scope.plane, scope.slice_index, scope.window)
        label = f"{scope.plane} {scope.slice_index + 1}" + ("" if key else " (reformat)")
        try:
            self.workflow.add_key_image(key, pixels, label)
        except (ReportError, OSError) as exc:
            self._say(str(exc), error=True)
            return
        self._show_key_image(label, pixels)

    def _show_key_image(self, label: str, pixels: np.ndarray) -> None:
        image = QImage(
            np.ascontiguousarray(pixels).data,
            pixels.shape[1],
            pixels.shape[0],
            pixels.shape[1] * 3,
            QImage.Format.Format_RGB888,
        ).copy()
        item = QListWidgetItem(label)
        item.setIcon(QPixmap.fromImage(image).scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio))
        self.key_list.addItem(item)

    def sign(self, status: ReportStatus) -> bool:
        """Ask who signs, with their password, then sign as that user (nothing is remembered for
        the next report)."""
        report = self.workflow.report
        if report is None:
            return False
        self.flush()
        if report.unreviewed_ai_spans():
            self._say(
                f"{report.unreviewed_ai_spans()} AI-written passage(s) not reviewed: edit or accept them first",
                error=True,
            )
            return False
        try:
            users = self.workflow.users.list()
        except UserError as exc:
            self._say(str(exc), error=True)
            return False
        action = {"preliminary": "Sign preliminary", "final": "Sign final", "corrected": "Sign correction"}
        self.sign_dialog = SignDialog(users, action[status.value], patient_line(report.study), self)
        try:
            if self.sign_dialog.exec() != QDialog.DialogCode.Accepted:
                self._say("Not signed.")
                return False
            login, password = self.sign_dialog.form.login, self.sign_dialog.form.take_password()
        finally:
            self.sign_dialog.deleteLater()
            self.sign_dialog = None
        routes = Routes(ris=self.ris_address(), msh=self.ris_msh()) if self.ris_address() else None
        try:  # with Settings > RIS "send when signed" on, the same step queues it for the RIS
            user, messages = self.workflow.sign(status, login, password, routes=routes)
        except AuthenticationError:
            self._say("Wrong user or password: the report is not signed.", error=True)
            return False
        except (ReportError, UserError) as exc:
            self._say(str(exc), error=True)
            return False
        finally:
            self._render()
        if messages:
            self._say(f"Signed {status.value} by {user.display_name} and queued for the RIS.")
            self.refresh_outbox()
        else:
            self._say(f"Signed {status.value} by {user.display_name}. Use the export buttons to send it.")
        return True

    def amend(self) -> None:
        try:
            self.workflow.amend()
        except ReportError as exc:
            self._say(str(exc), error=True)
        self._render()

    def send_to_ris(self) -> bool:
        try:
            message = self.workflow.send_to_ris(self.ris_address(), **self.ris_msh())
        except ValueError as exc:
            self._say(str(exc), error=True)
            return False
        self._say(f"Queued for the RIS (message {message.message_id}).")
        self.refresh_outbox()
        return True

    def send_to_pacs(self, node: str) -> bool:
        try:
            message = self.workflow.send_to_pacs(node)
        except (ValueError, OSError) as exc:
            self._say(str(exc), error=True)
            return False
        self._say(f"SR queued for {node} (message {message.message_id}).")
        self.refresh_outbox()
        return True

    def export_pdf(self, path: Path | None) -> TaskHandle | None:
        """Write the open report's PDF on a worker thread (a snapshot taken now); the button stays
        disabled and a second export is refused until it ends. Returns the task, or None."""
        if self.pdf_task is not None:
            self._say("A PDF is still being written; wait for it to finish.", error=True)
            return None
        if path is None:
            if self.workflow.report is None:
                return None
            suggested = self.pdf_folder / pdf_file_name(self.workflow.report)
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export report as PDF", str(suggested), "PDF (*.pdf)"
            )
            if not chosen:
                return None
            path = Path(chosen)
            self.pdf_folder = path.parent
        try:
            job = self.workflow.pdf_job(path)
        except ReportError as exc:
            self._say(str(exc), error=True)
            return None
        self._say("Writing PDF ...")
        self.pdf_task = self.tasks.submit(
            "PDF export",
            job,
            on_done=lambda warnings: self._pdf_done(job, warnings),
            on_error=self._pdf_failed,
            on_cancelled=lambda: self._pdf_cancelled(job),
        )
        self._update_buttons()
        return self.pdf_task

    def _pdf_done(self, job: PdfJob, warnings: list[str]) -> None:
        self.pdf_task = None
        try:
            self.workflow.record_pdf_export(job)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._say(
                f"PDF written to {job.path}, but the audit record could not be updated: {exc}", error=True
            )
        else:
            self._say("PDF written." + (" " + " ".join(warnings) if warnings else ""))
        self._update_buttons()

    def _pdf_cancelled(self, job: PdfJob) -> None:
        if job.written:  # the cancel came after the file was in place: it is a finished export
            self._pdf_done(job, [])
            return
        self.pdf_task = None
        self._say("PDF export cancelled; nothing written.")
        self._update_buttons()

    def _pdf_failed(self, message: str) -> None:
        self.pdf_task = None
        self._say(f"PDF not written: {message}", error=True)
        self._update_buttons()

    def refresh_pacs_nodes(self) -> None:
        """The PACS node list again (after Settings changed it), keeping the chosen node."""
        current = self.pacs_box.currentText()
        self.pacs_box.clear()
        self.pacs_box.addItems(self.pacs_nodes())
        if current:
            self.pacs_box.setCurrentText(current)
        self._update_buttons()

    def refresh_outbox(self) -> None:
        messages = self.workflow.messages()
        self.outbox_list.clear()
        for m in messages:
            route = "RIS" if m.kind == "hl7" else f"PACS {m.destination}"
            text = f"{route} {m.result_status}: {m.state.value} (attempts {m.attempts})"
            if m.last_error and m.state is not State.DELIVERED:
                text += f" - {m.last_error[:80]}"
            item = QListWidgetItem(text)
            if attention(m):
                item.setToolTip(attention(m))
                item.setText(f"{text}\n  {attention(m)}")
            self.outbox_list.addItem(item)
        self.retry_button.setEnabled(any(m.state is State.FAILED for m in messages))

    def retry_failed(self) -> None:
        refused = []
        for m in self.workflow.messages():
            if m.state is State.FAILED:
                try:
                    self.workflow.outbox.retry(m.message_id)
                except ValueError as exc:  # superseded by a later signature: never resent
                    refused.append(str(exc))
        if refused:
            self._say("; ".join(refused), error=True)
        self.refresh_outbox()


def _documents_folder() -> Path:
    """The user's Documents folder (home when there is none): never the current directory."""
    documents = Path.home() / "Documents"
    return documents if documents.is_dir() else Path.home()


class PredraftSwitch:
    """Starts/stops the background pre-drafter as Settings > General > pre-draft is turned on/off."""

    def __init__(self, service: ModelService, archive_dir: Path) -> None:
        self.service = service
        self.archive_dir = archive_dir
        self.predrafter = None

    def apply(self, enabled: bool) -> None:
        from app.assistant.predraft import PreDrafter
        from app.reporting.audit import ReportStore

        if enabled and self.predrafter is None:
            self.predrafter = PreDrafter(self.service, self.archive_dir, ReportStore())
            self.predrafter.start()
            log.info("pre-drafting on")
        elif not enabled and self.predrafter is not None:
            self.predrafter.stop()
            self.predrafter = None
            log.info("pre-drafting off")

    @property
    def running(self) -> bool:
        return self.predrafter is not None


def attach_report_editor(window, service: ModelService) -> tuple[ReportEditor, PredraftSwitch]:
    """Add the report editor to the main window's dock and start the outbox delivery thread; also
    returns the pre-drafting switch that follows Settings > General."""
    from pydicom import dcmread

    from app.assistant.chat import screen_context_from
    from app.reporting.audit import ReportStore
    from app.reporting.outbox import Outbox, OutboxWorker
    from dicom_net.pacs_nodes import PacsNodes

    outbox = Outbox(
        retention_days=window.settings.general.outbox_retention_days,
        ack_timeout=float(window.settings.ris.ack_timeout),
    )
    worker = OutboxWorker(outbox)
    worker.start()
    workflow = ReportWorkflow(ReportStore(), outbox, lambda uid: study_files(window.archive, uid))

    def ris_address() -> str:
        ris = window.settings.ris
        return f"{ris.host}:{ris.port}" if ris.enabled and ris.host else ""

    def ris_msh() -> dict[str, str]:
        ris = window.settings.ris
        return {
            "sending_application": ris.sending_application,
            "sending_facility": ris.sending_facility,
            "receiving_application": ris.receiving_application,
            "receiving_facility": ris.receiving_facility,
        }

    def pacs_nodes() -> list[str]:
        try:
            return sorted(PacsNodes().load())
        except Exception as exc:  # a broken node file must not break the editor
            log.warning("PACS nodes unavailable: %s", exc)
            return []

    editor = ReportEditor(
        service,
        workflow,
        lambda: screen_context_from(window),
        window,
        ris_address=ris_address,
        ris_msh=ris_msh,
        pacs_nodes=pacs_nodes,
        tasks=window.tasks,
    )

    def study_opened(study_uid: str) -> None:
        paths = study_files(window.archive, study_uid)
        try:
            info = StudyInfo.from_dataset(dcmread(paths[0], stop_before_pixels=True)) if paths else None
        except Exception as exc:  # noqa: BLE001 - unreadable header: no report, never the previous one
            log.error("report editor: header of study %s unreadable (%s)", study_uid, type(exc).__name__)
            info = None
        if info is None:
            editor.close_study(f"The images of study {study_uid} cannot be read: no report can be written.")
        else:
            editor.open_study(info)

    window.study_opened.connect(study_opened)
    window.destroyed.connect(lambda *_: worker.stop())
    predrafting = PredraftSwitch(editor.service, window.archive.root)
    predrafting.apply(window.settings.general.predraft)
    window.destroyed.connect(lambda *_: predrafting.apply(False))

    def settings_changed(settings) -> None:
        outbox.retention_days = settings.general.outbox_retention_days
        outbox.ack_timeout = float(settings.ris.ack_timeout)
        predrafting.apply(settings.general.predraft)
        editor._update_buttons()

    window.settings_changed.connect(settings_changed)
    window.pacs_nodes_changed.connect(editor.refresh_pacs_nodes)
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(editor.flush)
    window.add_side_panel(editor, "Report")
    return editor, predrafting
