"""A viewport frame: hosts one viewer widget (stack, MPR, 3D or cine), accepts dropped series.

The viewer widgets come from ``viewer.qt``; this frame builds the one for a
:class:`app.reading.layouts.ViewKind` around the viewport's model
(:class:`app.reading.viewports.ViewportModel`: the view states it observes), shows a hint while
empty or loading, and reports clicks anywhere in it (activation, double-click) and drops to the
reading widget.
"""

from __future__ import annotations

import importlib
import logging

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QMouseEvent
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app.gui.study_browser import SERIES_MIME
from app.reading.layouts import ViewKind
from app.reading.viewports import MPR_PLANES, ViewportModel

log = logging.getLogger(__name__)

# ViewKind -> (module, class) in the viewer layer.
VIEW_CLASSES = {
    ViewKind.STACK: ("viewer.qt.slice_view", "StackView"),
    ViewKind.MPR: ("viewer.qt.mpr_view", "MprView"),
    ViewKind.VOLUME: ("viewer.qt.volume_view", "VolumeRenderView"),
    ViewKind.CINE: ("viewer.qt.cine_view", "CineView"),
}


def view_class(kind: ViewKind) -> type:
    """The viewer widget class for ``kind``; StackView when that view is not available."""
    module_name, class_name = VIEW_CLASSES[kind]
    try:
        package = importlib.import_module("viewer.qt")
        cls = getattr(package, class_name, None) or getattr(importlib.import_module(module_name), class_name)
        return cls
    except (ImportError, AttributeError):
        log.warning("%s not available; showing a 2D stack instead", class_name)
        module_name, class_name = VIEW_CLASSES[ViewKind.STACK]
        return getattr(importlib.import_module(module_name), class_name)


class Viewport(QFrame):
    """One cell of the layout grid."""

    activated = Signal(int, str)  # viewport index, the MPR plane clicked ("" elsewhere)
    maximise_requested = Signal(int)  # double-click
    series_dropped = Signal(int, str)

    def __init__(self, index: int, model: ViewportModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.index = index
        self.model = model
        self.setObjectName("viewport")
        self.setAcceptDrops(True)
        self.view: QWidget | None = None
        self.kind: ViewKind | None = None
        self.series_uid: str | None = None
        self.hint = QLabel("Drag a series here", self)
        self.hint.setObjectName("placeholder")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption = QLabel("", self)  # e.g. "PRIOR 2024-03-01 CT chest": never mistaken for today's
        self.caption.setObjectName("priorCaption")
        self.caption.setStyleSheet("background:#3d2a5a;color:#e8dcff;padding:2px 6px;font-weight:bold;")
        self.caption.hide()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(1, 1, 1, 1)
        self._layout.addWidget(self.caption)
        self._layout.addWidget(self.hint)

    def set_active(self, active: bool) -> None:
        self.setProperty("active", "true" if active else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def show_message(self, text: str) -> None:
        self._clear_view()
        self.caption.hide()
        self.hint.setText(text)
        self.hint.show()

    def release(self) -> None:
        """The viewport is going away: its view stops observing the model (which lives on)."""
        self._clear_view()

    def _clear_view(self) -> None:
        if self.view is not None:
            detach = getattr(self.view, "detach", None)
            if detach is not None:
                detach()
            self._layout.removeWidget(self.view)
            self.view.close()
            self.view.deleteLater()
            self.view = None

    def show_volume(self, series_uid: str, kind: ViewKind, volume: object, caption: str = "") -> QWidget:
        """Build the viewer widget for ``kind`` and show ``volume`` in it (``caption``: a banner
        above it, e.g. that it is a prior)."""
        self._clear_view()
        self.hint.hide()
        self.caption.setText(caption)
        self.caption.setVisible(bool(caption))
        view = self._build_view(kind)
        view.set_volume(volume)
        for widget in (view, *view.findChildren(QWidget)):  # a click anywhere inside counts
            widget.installEventFilter(self)
        self._layout.addWidget(view)
        self.view, self.kind, self.series_uid = view, kind, series_uid
        return view

    def _build_view(self, kind: ViewKind) -> QWidget:
        """The viewer widget for ``kind``, observing this viewport's model."""
        cls = view_class(kind)
        model = self.model
        if cls.__name__ != VIEW_CLASSES[kind][1] or kind in (ViewKind.STACK, ViewKind.CINE):
            return cls(self, state=model.stack)
        if kind is ViewKind.MPR:
            return cls(self, states=model.planes, crosshair=model.crosshair)
        return cls(self, state=model.volume)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.MouseButtonPress:
            name = getattr(obj, "name", "")
            self.activated.emit(self.index, name if name in MPR_PLANES else "")
        elif event.type() == QEvent.Type.MouseButtonDblClick:
            self.maximise_requested.emit(self.index)
        return False

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.activated.emit(self.index, "")
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.view is None:  # with a view, the event filter has already seen it
            self.maximise_requested.emit(self.index)
        super().mouseDoubleClickEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(SERIES_MIME):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        uid = bytes(event.mimeData().data(SERIES_MIME)).decode()
        if uid:
            event.acceptProposedAction()
            self.series_dropped.emit(self.index, uid)
