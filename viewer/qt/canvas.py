"""A plain QWidget that shows a VTK scene rendered offscreen.

VTK always renders into its own offscreen window (EGL or GLX, whatever VTK picks); each frame is
read back and painted as a QImage, with overlays drawn by QPainter on top. One code path serves
Xvfb, a real display and ``QT_QPA_PLATFORM=offscreen`` (where the stock
``QVTKRenderWindowInteractor`` renders garbage or dies with X BadWindow), and ``QWidget.grab()``
captures the whole view, VTK pixels included. ``bench/render.py`` measures what this costs.
"""

from __future__ import annotations

import numpy as np
import vtk
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget
from vtk.util import numpy_support


class VtkCanvas(QWidget):
    """Owns one offscreen ``vtkRenderWindow`` with one ``vtkRenderer`` (``self.renderer``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.render_window = vtk.vtkRenderWindow()
        self.render_window.SetOffScreenRendering(True)
        self.render_window.SetMultiSamples(0)
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.render_window.AddRenderer(self.renderer)
        self._pixels = vtk.vtkUnsignedCharArray()
        self._frame: np.ndarray | None = None  # last read-back frame, RGBA, top row first
        self._dirty = True
        self.frames_rendered = 0  # VTK renders done (benchmarks check that a paint really rendered)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)
        self.setFocusPolicy(self.focusPolicy().StrongFocus)
        self.setMouseTracking(True)

    def sizeHint(self) -> QSize:
        return QSize(512, 512)

    def request_render(self) -> None:
        """Mark the VTK scene changed; it is rendered at the next paint."""
        self._dirty = True
        self.update()

    def _physical_size(self) -> tuple[int, int]:
        ratio = self.devicePixelRatioF()
        return max(int(round(self.width() * ratio)), 1), max(int(round(self.height() * ratio)), 1)

    def render_frame(self) -> np.ndarray:
        """Render the VTK scene now and return it as RGBA uint8 (H, W, 4), top row first."""
        w, h = self._physical_size()
        if tuple(self.render_window.GetSize()) != (w, h):
            self.render_window.SetSize(w, h)
        self.before_render()
        self.render_window.Render()
        self.render_window.GetRGBACharPixelData(0, 0, w - 1, h - 1, 0, self._pixels)
        self._frame = np.ascontiguousarray(numpy_support.vtk_to_numpy(self._pixels).reshape(h, w, 4)[::-1])
        self._dirty = False
        self.frames_rendered += 1
        return self._frame

    def before_render(self) -> None:
        """Hook: bring the VTK scene up to date with the model (camera, window/level...)."""

    def paint_overlay(self, painter: QPainter) -> None:
        """Hook: draw annotations over the image in widget (logical) coordinates."""

    def paintEvent(self, event: object) -> None:  # noqa: N802 (Qt name)
        if self._dirty or self._frame is None or self._frame.shape[1::-1] != self._physical_size():
            self.render_frame()
        frame = self._frame
        assert frame is not None
        # RGBX: VTK leaves alpha 0 on the background, which would let the widget show through
        image = QImage(
            frame.data, frame.shape[1], frame.shape[0], frame.strides[0], QImage.Format.Format_RGBX8888
        )
        image.setDevicePixelRatio(self.devicePixelRatioF())
        painter = QPainter(self)
        painter.drawImage(0, 0, image)
        self.paint_overlay(painter)
        painter.end()

    def resizeEvent(self, event: object) -> None:  # noqa: N802
        self._dirty = True
        super().resizeEvent(event)

    def render_to_array(self, overlays: bool = True) -> np.ndarray:
        """What the view shows as RGB uint8 (H, W, 3); ``overlays=False`` gives the VTK image alone."""
        if not overlays:
            return self.render_frame()[..., :3].copy()
        image = self.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        w, h = image.width(), image.height()
        data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * h)
        return data.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()

    def closeEvent(self, event: object) -> None:  # noqa: N802
        self.render_window.Finalize()
        super().closeEvent(event)
