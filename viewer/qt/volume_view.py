"""3D volume rendering on the CPU: ``vtkFixedPointVolumeRayCastMapper`` inside a ``VtkCanvas``.

No GPU is assumed: while the mouse drags, rays are cast on a coarser image grid and with a
longer step (``INTERACTIVE_*``); on release one full-quality frame is rendered.
World coordinates are LPS mm; the default camera looks at the patient from the front
(anterior view, head up, patient left on screen right).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import vtk
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QWidget
from vtk.util import numpy_support

from viewer.qt.canvas import VtkCanvas
from viewer.view_state import VOLUME_PRESETS, VolumeState

# (value, r, g, b) colour points and (value, opacity) points per preset; values in HU.
PRESETS: dict[str, dict[str, Any]] = {
    "CT bone": {
        "blend": "composite",
        "color": [(-1000, 0, 0, 0), (150, 0.55, 0.25, 0.15), (300, 0.9, 0.8, 0.6), (1500, 1, 1, 0.95)],
        "opacity": [(-1000, 0), (150, 0), (300, 0.25), (1500, 0.9)],
    },
    "CT soft tissue": {
        "blend": "composite",
        "color": [
            (-1000, 0, 0, 0),
            (-100, 0.7, 0.45, 0.35),
            (60, 0.85, 0.55, 0.45),
            (300, 1, 0.95, 0.85),
            (1500, 1, 1, 1),
        ],
        "opacity": [(-1000, 0), (-300, 0), (-100, 0.05), (60, 0.15), (300, 0.5), (1500, 0.8)],
    },
    "MIP": {"blend": "mip", "color": [], "opacity": []},  # grey ramp over the volume's value range
}
assert tuple(PRESETS) == VOLUME_PRESETS, "the 3D presets are named once, in viewer.view_state"
FULL_IMAGE_SAMPLE_DISTANCE = 1.0
INTERACTIVE_IMAGE_SAMPLE_DISTANCE = 2.0  # cast one ray per 2x2 screen pixels while dragging
INTERACTIVE_STEP_FACTOR = 2.0  # and step twice as far along each ray


class VolumeRenderView(VtkCanvas):
    """Volume rendering with presets, rotate (left drag), zoom (right drag/wheel), pan (middle)."""

    preset_changed = Signal(str)
    camera_changed = Signal()

    def __init__(self, parent: QWidget | None = None, state: VolumeState | None = None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else VolumeState(VOLUME_PRESETS)  # the model it observes
        self.state.changed.connect(self._on_state_changed)
        self.volume: Any = None
        self._voxels: np.ndarray | None = None
        self.interacting = False
        self._value_range = (0.0, 1.0)
        self._image = vtk.vtkImageData()
        self.mapper = vtk.vtkFixedPointVolumeRayCastMapper()
        self.mapper.SetInputData(self._image)
        self.mapper.SetAutoAdjustSampleDistances(False)
        self.mapper.SetLockSampleDistanceToInputSpacing(False)
        self.property = vtk.vtkVolumeProperty()
        self.property.SetInterpolationTypeToLinear()
        self.property.ShadeOff()
        self.actor = vtk.vtkVolume()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.property)
        self._last: QPointF | None = None
        self._button = Qt.MouseButton.NoButton
        self._base_step = 1.0

    def set_volume(self, volume: Any, metadata: dict[str, Any] | None = None) -> None:
        """Render ``volume`` (``viewer.volume.Volume``), placed in LPS by its geometry."""
        if volume.is_color:
            raise ValueError("volume rendering needs a greyscale volume")
        self.volume = volume
        voxels = np.ascontiguousarray(volume.voxels)
        k, j, i = voxels.shape
        self._image.SetDimensions(i, j, k)
        self._image.SetSpacing(*volume.spacing)
        self._image.SetOrigin(0.0, 0.0, 0.0)
        # VTK reads the voxels in place (no copy of a possibly 250 MiB volume); keep them alive
        self._voxels = voxels
        self._image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.ravel(), deep=False))
        self._image.Modified()
        matrix = vtk.vtkMatrix4x4()
        direction = np.asarray(volume.direction, dtype=np.float64)
        for r in range(3):
            for c in range(3):
                matrix.SetElement(r, c, direction[r, c])
            matrix.SetElement(r, 3, float(volume.origin[r]))
        self.actor.SetUserMatrix(matrix)
        self._value_range = (float(voxels.min()), float(voxels.max()))
        self._base_step = float(min(volume.spacing)) / 2.0
        if self.renderer.GetVolumes().GetNumberOfItems() == 0:
            self.renderer.AddVolume(self.actor)
        if self.state.source is not volume:  # a new series: its modality's preset
            modality = str({**volume.metadata, **(metadata or {})}.get("modality", "")).upper()
            self.state.source = volume
            self.state.preset = "CT bone" if modality == "CT" else "MIP"
        self._apply_preset(self.state.preset)
        self.reset_camera()

    @property
    def preset(self) -> str:
        return self.state.preset

    def presets(self) -> list[str]:
        return list(self.state.presets)

    def set_preset(self, name: str) -> None:
        self.state.set_preset(name)

    def detach(self) -> None:
        if self._on_state_changed in self.state.changed:
            self.state.changed.disconnect(self._on_state_changed)

    def _on_state_changed(self, what: str) -> None:
        if what == "preset":
            self._apply_preset(self.state.preset)

    def _apply_preset(self, name: str) -> None:
        preset = PRESETS[name]
        color, opacity = vtk.vtkColorTransferFunction(), vtk.vtkPiecewiseFunction()
        if preset["blend"] == "mip":
            lo, hi = self._value_range
            color.AddRGBPoint(lo, 0, 0, 0)
            color.AddRGBPoint(hi, 1, 1, 1)
            opacity.AddPoint(lo, 1.0)
            opacity.AddPoint(hi, 1.0)
            self.mapper.SetBlendModeToMaximumIntensity()
        else:
            for value, r, g, b in preset["color"]:
                color.AddRGBPoint(value, r, g, b)
            for value, a in preset["opacity"]:
                opacity.AddPoint(value, a)
            self.mapper.SetBlendModeToComposite()
        self.property.SetColor(color)
        self.property.SetScalarOpacity(opacity)
        self.preset_changed.emit(name)
        self.request_render()

    def reset_camera(self) -> None:
        """Anterior view: look along +y (posterior), head up, whole volume in view."""
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(0.0, 0.0, 0.0)
        camera.SetPosition(0.0, -1.0, 0.0)
        camera.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCamera()
        self.camera_changed.emit()
        self.request_render()

    def rotate(self, azimuth_deg: float, elevation_deg: float) -> None:
        camera = self.renderer.GetActiveCamera()
        camera.Azimuth(azimuth_deg)
        camera.Elevation(elevation_deg)
        camera.OrthogonalizeViewUp()
        self.camera_changed.emit()
        self.request_render()

    def zoom(self, factor: float) -> None:
        self.renderer.GetActiveCamera().Dolly(factor)
        self.renderer.ResetCameraClippingRange()
        self.camera_changed.emit()
        self.request_render()

    def set_interacting(self, interacting: bool) -> None:
        """Coarse, fast rays while the user drags; full quality once released."""
        self.interacting = interacting
        self.request_render()

    def before_render(self) -> None:
        sample = INTERACTIVE_IMAGE_SAMPLE_DISTANCE if self.interacting else FULL_IMAGE_SAMPLE_DISTANCE
        step = self._base_step * (INTERACTIVE_STEP_FACTOR if self.interacting else 1.0)
        self.mapper.SetImageSampleDistance(sample)
        self.mapper.SetSampleDistance(step)
        self.renderer.ResetCameraClippingRange()

    def world_to_screen(self, lps: np.ndarray) -> tuple[float, float]:
        """Widget pixel (x right, y down) where an LPS point projects with the current camera."""
        self.render_window.SetSize(*self._physical_size())
        self.renderer.SetWorldPoint(float(lps[0]), float(lps[1]), float(lps[2]), 1.0)
        self.renderer.WorldToDisplay()
        x, y, _ = self.renderer.GetDisplayPoint()
        ratio = self.devicePixelRatioF()
        return x / ratio, self.height() - y / ratio

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._last, self._button = event.position(), event.button()
        self.set_interacting(True)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._last is None:
            return
        pos = event.position()
        dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
        if self._button == Qt.MouseButton.LeftButton:
            self.rotate(-dx * 180.0 / max(self.width(), 1), dy * 180.0 / max(self.height(), 1))
        elif self._button == Qt.MouseButton.RightButton:
            self.zoom(math.exp(-dy / 200.0))
        elif self._button == Qt.MouseButton.MiddleButton:
            camera = self.renderer.GetActiveCamera()
            scale = (
                2.0
                * camera.GetDistance()
                * math.tan(math.radians(camera.GetViewAngle() / 2))
                / max(self.height(), 1)
            )
            right = np.cross(camera.GetDirectionOfProjection(), camera.GetViewUp())
            shift = (-dx * right + dy * np.asarray(camera.GetViewUp())) * scale
            camera.SetFocalPoint(*(np.asarray(camera.GetFocalPoint()) + shift))
            camera.SetPosition(*(np.asarray(camera.GetPosition()) + shift))
            self.camera_changed.emit()
            self.request_render()
        self._last = pos

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._last, self._button = None, Qt.MouseButton.NoButton
        self.set_interacting(False)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        self.zoom(1.1 ** (event.angleDelta().y() / 120))

    def paint_overlay(self, painter: QPainter) -> None:
        painter.setPen(Qt.GlobalColor.lightGray)
        painter.drawText(
            6, self.height() - 8, f"{self.preset}{'  (interactive)' if self.interacting else ''}"
        )

    def describe(self) -> dict[str, object]:
        camera = self.renderer.GetActiveCamera()
        return {
            "view": "3D",
            "preset": self.preset,
            "direction_of_projection_lps": [round(v, 4) for v in camera.GetDirectionOfProjection()],
            "view_up_lps": [round(v, 4) for v in camera.GetViewUp()],
        }
