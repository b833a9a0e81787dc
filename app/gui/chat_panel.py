"""The AI chat dock: ask the local Hulu-Med model about what is on screen.

A thin Qt view over :mod:`app.assistant.chat`: chips show exactly what will be sent (series,
plane, slices, window, image count, token estimate) and can be changed before sending; answers
stream in, a Stop button cancels, follow-ups continue the study's conversation, thinking-mode
reasoning is folded away (click to unfold). The model runs in the engine's worker thread and the
inputs are prepared in a Python thread: the GUI thread never waits for the model.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.assistant.chat import (
    AI_NOTICE,
    AskScope,
    ChatSession,
    Phase,
    ScreenContext,
    conversation_id_for,
    default_scope,
    offered_scopes,
    summarise,
)
from app.assistant.model_service import ModelService, ModelState
from app.reporting.templates import quick_prompts

log = logging.getLogger(__name__)
KIND_LABELS = {"image": "Current image", "volume": "Series as volume", "cine": "Cine"}
PLANES = ("axial", "coronal", "sagittal", "native")
CHIP_STYLE = "background:#2d4a6b;color:#e0f0ff;padding:2px 6px;"


RETENTION_CHECK_MS = 3600 * 1000  # chat histories past their retention are deleted hourly
PROMPT_TEXT_TOKENS = 64  # question + chat markup, for the time estimate


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class ChatPanel(QWidget):
    """Dock panel; ``context_provider`` returns what the active viewport shows (or None)."""

    delta_arrived = Signal(str, str)  # reasoning, answer (from the worker thread)
    answer_finished = Signal(str)  # error text or ""
    model_state_changed = Signal(object)
    phase_changed = Signal(object)  # Phase (from the worker / engine thread)

    def __init__(
        self,
        service: ModelService,
        context_provider: Callable[[], ScreenContext | None],
        parent: QWidget | None = None,
        *,
        max_new_tokens: int = 512,
        max_visual_tokens: int = 16384,
        navigate: Callable[[str, str, int], None] | None = None,
    ):
        super().__init__(parent)
        self.service = service
        self.context_provider = context_provider
        self.max_new_tokens = max_new_tokens
        self.max_visual_tokens = max_visual_tokens
        self.navigate = navigate  # (series UID, plane, slice index): show that slice in the viewer
        self.sessions: dict[str, ChatSession] = {}
        self.context: ScreenContext | None = None
        self.scope: AskScope | None = None
        self.chosen_kind: str | None = None  # the scope kind the reader picked (None: follow the screen)
        self._cancel: threading.Event | None = None
        self._worker: threading.Thread | None = None
        self._answering: str | None = None  # study UID of the question being answered
        self._expanded: set[int] = set()
        self._updating = False
        self.chip_texts: list[str] = []  # what the chips say (what will be sent)

        self.notice = QLabel(AI_NOTICE, self)
        self.notice.setObjectName("aiNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("background:#5a3d00;color:#ffe0a0;padding:4px;border-radius:3px;")
        self.model_label = QLabel(self)
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.slow_label = QLabel(self)  # CPU slow mode and the time a question will take
        self.slow_label.setObjectName("slowMode")
        self.slow_label.setWordWrap(True)
        self.slow_label.setStyleSheet("color:#ffb060;")
        self.phase_label = QLabel(self)  # what the model is doing now
        self.phase_label.setObjectName("phase")
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.phase_label.setVisible(False)
        self.progress.setVisible(False)

        self.kind_box = QComboBox(self)
        for kind, label in KIND_LABELS.items():
            self.kind_box.addItem(label, kind)
        self.plane_box = QComboBox(self)
        self.plane_box.addItems(PLANES)
        self.slice_spin = QSpinBox(self)
        self.slice_spin.setPrefix("slice ")
        self.slices_spin = QSpinBox(self)
        self.slices_spin.setRange(2, 256)
        self.slices_spin.setSuffix(" slices")
        self.width_spin = QDoubleSpinBox(self)
        self.width_spin.setRange(1, 100000)
        self.width_spin.setPrefix("W ")
        self.level_spin = QDoubleSpinBox(self)
        self.level_spin.setRange(-100000, 100000)
        self.level_spin.setPrefix("L ")
        self.refresh_button = QPushButton("Use screen", self)
        self.refresh_button.setToolTip("Take series, plane, slice and window from the active viewport")
        self.chips = QLabel(self)
        self.chips.setObjectName("chips")
        self.chips.setWordWrap(True)
        self.chips.setTextFormat(Qt.TextFormat.RichText)

        self.history_view = QTextBrowser(self)
        self.history_view.setOpenLinks(False)
        self.history_view.anchorClicked.connect(self._toggle_reasoning)
        self.quick_box = QComboBox(self)
        self.quick_box.setPlaceholderText("Quick questions ...")
        self.quick_box.activated.connect(self._use_quick_prompt)
        self.input = QPlainTextEdit(self)
        self.input.setPlaceholderText("Ask about what is on screen ...")
        self.input.setMaximumHeight(70)
        self.think_box = QCheckBox("Thinking mode", self)
        self.send_button = QPushButton("Ask", self)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setEnabled(False)

        scope_row = QHBoxLayout()
        for widget in (self.kind_box, self.plane_box, self.slice_spin, self.slices_spin):
            scope_row.addWidget(widget)
        window_row = QHBoxLayout()
        for widget in (self.width_spin, self.level_spin, self.refresh_button):
            window_row.addWidget(widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.think_box)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.notice)
        layout.addWidget(self.model_label)
        layout.addLayout(scope_row)
        layout.addLayout(window_row)
        layout.addWidget(self.chips)
        layout.addWidget(self.slow_label)
        layout.addWidget(self.history_view, 1)
        layout.addWidget(self.phase_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.quick_box)
        layout.addWidget(self.input)
        layout.addLayout(buttons)

        for signal in (
            self.kind_box.currentIndexChanged,
            self.plane_box.currentIndexChanged,
            self.slice_spin.valueChanged,
            self.slices_spin.valueChanged,
            self.width_spin.valueChanged,
            self.level_spin.valueChanged,
        ):
            signal.connect(self._scope_edited)
        self.refresh_button.clicked.connect(self.refresh_from_screen)
        self.send_button.clicked.connect(lambda: self.ask(self.input.toPlainText()))
        self.stop_button.clicked.connect(self.stop)
        self.follow_screen = True
        self._screen_key: tuple | None = None
        self.screen_timer = QTimer(self)
        self.screen_timer.setInterval(500)
        self.screen_timer.timeout.connect(self._poll_screen)
        self.screen_timer.start()
        self.delta_arrived.connect(self._on_delta)
        self.answer_finished.connect(self._on_finished)
        self.model_state_changed.connect(self._show_model_state)
        self.phase_changed.connect(self._on_phase)
        service.on_state(self.model_state_changed.emit)
        self._show_model_state(service.state)
        self.refresh_from_screen()

    # -- model state -------------------------------------------------------------------------
    def _show_model_state(self, state: ModelState) -> None:
        self.model_label.setText(state.message)
        self.model_label.setVisible(not state.ready)
        self._show_estimate()
        self._update_enabled()

    def _show_estimate(self) -> None:
        """In CPU slow mode, say so before asking, with the time this question will take as
        measured on this machine (unknown until the first answer)."""
        if not (self.service.state.ready and self.service.slow_mode):
            self.slow_label.setVisible(False)
            return
        text = "CPU slow mode: no usable GPU, the model runs on the processor."
        speed = self.service.speed
        if self.scope is not None and self.context is not None and speed is not None:
            session = self.session
            new_images = session is None or session._last_scope != self.scope
            summary = summarise(self.context.volume, self.scope, self.max_visual_tokens)
            prompt = (summary.visual_tokens if new_images else 0) + PROMPT_TEXT_TOKENS
            seconds = speed.estimate_seconds(prompt, self.max_new_tokens)
            text += (
                f" This question: about {_duration(seconds)} at most (measured here: reading "
                f"{speed.read_tokens_per_s:.0f} tokens/s, writing {speed.write_tokens_per_s:.1f} tokens/s)."
            )
        else:
            text += " The first answer measures how long answers take here."
        self.slow_label.setText(text)
        self.slow_label.setVisible(True)

    def _update_enabled(self) -> None:
        busy = self._worker is not None
        self.send_button.setEnabled(self.service.state.ready and not busy and self.scope is not None)
        self.stop_button.setEnabled(busy)

    # -- scope (chips) -----------------------------------------------------------------------
    @property
    def session(self) -> ChatSession | None:
        if self.context is None:
            return None
        uid = self.context.study_uid
        if uid not in self.sessions:
            self.sessions[uid] = ChatSession.load(uid)
        return self.sessions[uid]

    @staticmethod
    def _key(context: ScreenContext | None) -> tuple | None:
        if context is None:
            return None
        return (
            context.study_uid,
            context.series_uid,
            context.plane,
            context.slice_index,
            context.window,
            context.invert,
            context.frame_index,
            context.shows,
            repr(context.geometry),
            context.position_mm,
            context.slab,
            context.display,
        )

    def _poll_screen(self) -> None:
        """Chips follow the screen until the user edits them ("Use screen" follows again)."""
        if (
            self.follow_screen
            and self._worker is None
            and self._key(self.context_provider()) != self._screen_key
        ):
            self.refresh_from_screen()

    def refresh_from_screen(self) -> None:
        """Re-read the active viewport: series, plane, slice, window (the chips follow)."""
        context = self.context_provider()
        self.follow_screen = True
        self._screen_key = self._key(context)
        study_changed = context is None or self.context is None or context.study_uid != self.context.study_uid
        self.context = context
        if study_changed:
            self.chosen_kind = None
        kind = self.chosen_kind  # the reader's choice holds while it fits; else what the viewport shows
        if context is not None and kind not in offered_scopes(context):
            kind = None
        self.scope = default_scope(context, kind) if context is not None and offered_scopes(context) else None
        if study_changed:
            self._fill_quick_prompts()
            self._render_history()
        self._show_scope()

    def _fill_quick_prompts(self) -> None:
        self.quick_box.clear()
        modality = self.context.modality if self.context else ""
        self.quick_box.addItems(quick_prompts(modality))

    def _use_quick_prompt(self, index: int) -> None:
        self.input.setPlainText(self.quick_box.itemText(index))

    def _show_scope(self) -> None:
        self._updating = True
        try:
            scope = self.scope
            for widget in (
                self.kind_box,
                self.plane_box,
                self.slice_spin,
                self.slices_spin,
                self.width_spin,
                self.level_spin,
            ):
                widget.setEnabled(scope is not None)
                if scope is None:  # no placeholder values (slice 0, W 1) while nothing is open
                    widget.setVisible(False)
            self.refresh_button.setVisible(scope is not None or self.context_provider() is not None)
            if scope is None:
                self.chip_texts = []
                self.chips.setText("<i>Open a series to ask about it.</i>")
                return
            self.kind_box.setVisible(True)
            self.kind_box.clear()  # only the scopes that fit what the viewport shows
            for kind in offered_scopes(self.context):
                self.kind_box.addItem(KIND_LABELS[kind], kind)
            self.kind_box.setCurrentIndex(self.kind_box.findData(scope.kind))
            if self.plane_box.findText(scope.plane) < 0:  # e.g. "oblique": shown, not choosable
                self.plane_box.addItem(scope.plane)
            self.plane_box.setCurrentText(scope.plane)
            depth = self._depth(scope)
            self.slice_spin.setRange(1, max(depth, 1))
            self.slice_spin.setValue(scope.slice_index + 1)
            self.slices_spin.setRange(2, max(depth, 2))
            self.slices_spin.setValue(scope.slices)
            self.slice_spin.setVisible(scope.kind == "image")
            self.slices_spin.setVisible(scope.kind == "volume")
            self.plane_box.setVisible(scope.kind != "cine")
            has_window = scope.window is not None
            self.width_spin.setVisible(has_window)
            self.level_spin.setVisible(has_window)
            if has_window:
                self.width_spin.setValue(scope.window[0])
                self.level_spin.setValue(scope.window[1])
            summary = summarise(self.context.volume, scope, self.max_visual_tokens)
            self.chip_texts = summary.chips()
            self.chips.setText(
                " ".join(
                    f"<span style='{CHIP_STYLE}'>&nbsp;{html.escape(c).replace(' ', '&nbsp;')}&nbsp;</span>"
                    for c in summary.chips()
                )
            )
        finally:
            self._updating = False
            self._show_estimate()
            self._update_enabled()

    def forget_study(self, study_uid: str) -> None:
        """The study was closed: free the model's cached KV of its conversation (the visible
        history stays; a later question reads the images again)."""
        self.service.forget_conversation(conversation_id_for(study_uid))

    def _depth(self, scope: AskScope) -> int:
        from viewer.reslice import plane_positions

        if scope.kind == "cine":
            return int(self.context.volume.voxels.shape[0])
        return len(plane_positions(self.context.volume, scope.view().plane or scope.plane))

    def _scope_edited(self) -> None:
        if self._updating or self.scope is None or self.context is None:
            return
        self.follow_screen = False
        kind = self.kind_box.currentData()
        if kind != self.scope.kind:
            self.chosen_kind = kind
            try:
                self.scope = default_scope(self.context, kind, slices=self.slices_spin.value())
            except ValueError as exc:
                self.chips.setText(html.escape(str(exc)))
                return
        else:
            self.scope.choose(self.plane_box.currentText(), self.slice_spin.value() - 1)
            depth = self._depth(self.scope)
            self.scope.slice_index = min(self.scope.slice_index, depth - 1)
            self.scope.slices = min(self.slices_spin.value(), depth)
            if self.scope.window is not None:
                self.scope.window = (self.width_spin.value(), self.level_spin.value())
        self._show_scope()

    # -- asking ------------------------------------------------------------------------------
    def ask(self, question: str) -> bool:
        """Send ``question`` with the current scope; False (and a message) when it cannot."""
        session, scope, context = self.session, self.scope, self.context
        if not self.service.state.ready:
            self._show_model_state(self.service.state)
            return False
        if session is None or scope is None or context is None or not question.strip() or self._worker:
            return False
        self.input.clear()
        self._cancel = threading.Event()
        cancel, volume = self._cancel, context.volume
        asked_scope = AskScope(**vars(scope))
        think = self.think_box.isChecked()

        def work() -> None:
            try:
                session.ask(
                    self.service,
                    question,
                    volume,
                    asked_scope,
                    think=think,
                    max_new_tokens=self.max_new_tokens,
                    max_tokens=self.max_visual_tokens,
                    on_delta=self.delta_arrived.emit,
                    cancel=cancel,
                    on_phase=self.phase_changed.emit,
                )
                self.answer_finished.emit("")
            except Exception as exc:  # shown in the panel; the app keeps working
                log.exception("chat request failed")
                self.answer_finished.emit(str(exc))

        self._answering = session.study_uid
        self._worker = threading.Thread(target=work, name="chat-request", daemon=True)
        self._worker.start()
        self._on_phase(Phase("preparing", 0, 0, 0.0))
        self._render_history()
        self._update_enabled()
        return True

    def _on_phase(self, phase: Phase) -> None:
        if self._worker is None:
            return  # a late signal of a finished request
        self.phase_label.setText(f"{phase.describe()} ({phase.elapsed_s:.0f} s)")
        self.progress.setRange(0, phase.total)  # 0..0: busy indicator when the total is unknown
        self.progress.setValue(min(phase.done, phase.total))
        self.phase_label.setVisible(True)
        self.progress.setVisible(True)

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running request (tests, shutdown); True when none is running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return self._worker is None or not self._worker.is_alive()

    def _on_delta(self, _reasoning: str, _answer: str) -> None:
        self._render_history()

    def _on_finished(self, error: str) -> None:
        if self._worker is not None:
            self._worker.join()
        self._worker = None
        self._answering = None
        self._cancel = None
        self.phase_label.setVisible(False)
        self.progress.setVisible(False)
        self._show_estimate()
        if error:
            self.history_view.append(f"<p style='color:#ff8080'>{html.escape(error)}</p>")
        else:
            self._render_history()
        self._update_enabled()

    # -- history -----------------------------------------------------------------------------
    def purge_expired_history(self, retention_days: int, also_open: set[str] | None = None) -> list[str]:
        """Apply the retention rule to the saved chat histories. The study shown now, one being
        answered and ``also_open`` (the study open for reading) are never touched; histories
        deleted on disk are dropped here too, so an old conversation is not written back."""
        keep = set(also_open or ())
        if self.context is not None:
            keep.add(self.context.study_uid)
        if self._worker is not None and self._answering is not None:
            keep.add(self._answering)
        purged = ChatSession.purge_expired(retention_days, keep)
        for uid in purged:
            self.sessions.pop(uid, None)
        return purged

    def _toggle_reasoning(self, url: QUrl) -> None:
        """Links: ``reason:<message>`` folds/unfolds reasoning, ``goto:<message>:<slice>`` navigates."""
        parts = url.toString().split(":")
        if parts[0] == "goto":
            message = self.session.history[int(parts[1])] if self.session else None
            if message is not None and self.navigate is not None:
                self.navigate(message.series_uid, message.plane, int(parts[2]))
            return
        self._expanded ^= {int(parts[-1])}
        self._render_history()

    def _render_history(self) -> None:
        session = self.session
        parts = []
        for index, message in enumerate(session.history if session else []):
            if session.restored and index == session.restored:
                parts.append(
                    "<p><small><i>- earlier session above: not in the model's context -</i></small></p>"
                )
            text = html.escape(message.text).replace("\n", "<br>")
            if message.role == "user":
                chips = " · ".join(html.escape(c) for c in message.chips)
                links = " ".join(f"<a href='goto:{index}:{k}'>{k + 1}</a>" for k in message.slices[:64])
                shown = f"<br><small>Images: {message.plane} {links}</small>" if links else ""
                parts.append(f"<p><b>You:</b> {text}<br><small style='color:#8aa'>{chips}</small>{shown}</p>")
                continue
            body = [f"<p><b>AI draft:</b> {text or '<i>...</i>'}"]
            if message.reasoning:
                if index in self._expanded:
                    reasoning = html.escape(message.reasoning).replace("\n", "<br>")
                    body.append(
                        f"<br><a href='reason:{index}'>hide reasoning</a>"
                        f"<br><small style='color:#999'>{reasoning}</small>"
                    )
                else:
                    body.append(
                        f"<br><a href='reason:{index}'>show reasoning ({len(message.reasoning)} chars)</a>"
                    )
            body.append("</p>")
            parts.append("".join(body))
        self.history_view.setHtml("".join(parts))
        bar = self.history_view.verticalScrollBar()
        bar.setValue(bar.maximum())


def attach_chat_panel(window, service: ModelService) -> ChatPanel:
    """Add the chat panel to the main window's dock; it follows the active viewport."""
    from app.assistant.chat import screen_context_from

    def navigate(series_uid: str, plane: str, index: int) -> None:
        context = screen_context_from(window)
        state = window.reading.active_state()
        if context is None or state is None or context.series_uid != series_uid:
            window.statusBar().showMessage("Show that series in the active viewport to go to the slice", 5000)
            return
        if getattr(state, "plane", plane) != plane and plane != "cine":
            window.statusBar().showMessage(
                f"Switch the active view to the {plane} plane to go to the slice", 5000
            )
            return
        state.set_slice(index)

    panel = ChatPanel(service, lambda: screen_context_from(window), window, navigate=navigate)
    window.add_side_panel(panel, "Assistant")

    def purge_history() -> None:
        try:
            panel.purge_expired_history(
                window.settings.general.outbox_retention_days,
                {window.session.study_uid} if window.session else set(),
            )
        except OSError as exc:  # a full or read-only disk must not break the panel; tried again later
            log.warning("chat retention not applied: %s", type(exc).__name__)

    panel.retention_timer = QTimer(panel)
    panel.retention_timer.setInterval(RETENTION_CHECK_MS)
    panel.retention_timer.timeout.connect(purge_history)
    panel.retention_timer.start()
    window.settings_changed.connect(lambda _settings: purge_history())
    purge_history()
    window.reading.loaded.connect(lambda _index: panel.refresh_from_screen())
    window.study_opened.connect(lambda _uid: panel.refresh_from_screen())
    window.study_closed.connect(panel.forget_study)
    return panel
