"""2D views: ``SliceView`` shows one plane; ``StackView`` scrolls a volume's slices.

Planes are ``viewer.reslice.PlaneImage`` (radiological convention; ``row_dir`` is the LPS
direction of increasing column, ``col_dir`` of increasing row). The VTK scene is a single
image actor windowed by ``vtkImageProperty``; flips and rotations are the actor's matrix,
zoom/pan the parallel camera. Text, orientation labels, scale bar,
measurements and crosshair/reference lines are painted with QPainter over the frame.
All state lives in ``self.state`` (``viewer.view_state.ViewState``); the widget only observes it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import vtk
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeyEvent, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QWidget
from vtk.util import numpy_support

from viewer.presets import WindowPreset, default_window, presets_for
from viewer.qt.canvas import VtkCanvas
from viewer.reslice import Plane, PlaneImage, SlabMode, plane_image, plane_positions, value_range
from viewer.tools import (
    POINTS_NEEDED,
    Calibration,
    Measurement,
    Point,
    calibration_from_metadata,
    measure,
    pixel_value,
)
from viewer.view_state import OrientationLabels, ViewState, patient_orientation_axes

MEASUREMENT_TOOLS = tuple(POINTS_NEEDED)
TOOLS = ("window", "pan", "zoom", "crosshair") + MEASUREMENT_TOOLS
_KEY_NAMES = {
    Qt.Key.Key_Up: "Up",
    Qt.Key.Key_Down: "Down",
    Qt.Key.Key_PageUp: "PageUp",
    Qt.Key.Key_PageDown: "PageDown",
    Qt.Key.Key_Home: "Home",
    Qt.Key.Key_End: "End",
    Qt.Key.Key_Escape: "Escape",
    Qt.Key.Key_Plus: "+",
    Qt.Key.Key_Minus: "-",
}
OVERLAY_PARTS = ("lines", "measurements", "text", "labels", "scale")  # what ``overlay_parts`` may hold
_YELLOW = QColor(255, 220, 0)
_TEXT = QColor(230, 230, 230)


def meta_text(metadata: dict[str, Any], *keys: str) -> str:
    """First non-empty value among ``keys`` (loader snake_case or DICOM keyword) as text."""
    for key in keys:
        value = metadata.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def modality_unit(metadata: dict[str, Any]) -> str:
    """Unit of the pixel values: the loader's ``rescale_type`` when given (even "" for unspecified
    values such as a perfusion map), else "HU" for CT."""
    if "rescale_type" in metadata:
        return str(metadata["rescale_type"] or "")
    return "HU" if meta_text(metadata, "modality", "Modality").upper() == "CT" else ""


def nice_length(max_mm: float) -> float:
    """Largest 1/2/5 x 10^n mm length not above ``max_mm`` (scale bar)."""
    exponent = math.floor(math.log10(max_mm))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= max_mm:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def _shadowed_text(painter: QPainter, x: int, y: int, w: int, h: int, flags: object, text: str) -> None:
    """Text with a 1 px dark shadow, readable on bright and dark image areas alike."""
    pen = painter.pen()
    painter.setPen(QColor(0, 0, 0))
    painter.drawText(x + 1, y + 1, w, h, flags, text)
    painter.setPen(pen)
    painter.drawText(x, y, w, h, flags, text)


class SliceView(VtkCanvas):
    """Displays one ``PlaneImage``; forwards mouse/keys to its ``ViewState`` and the active tool."""

    slice_changed = Signal(int)
    window_changed = Signal(float, float)
    measurement_added = Signal(object)
    cursor_value_changed = Signal(object)  # dict(col, row, value, lps) or None
    point_picked = Signal(object)  # LPS point clicked/dragged with the crosshair tool

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ViewState()
        self.state.changed.connect(self._on_state_changed)
        self.plane: PlaneImage | None = None
        self.plane_key: tuple[object, ...] = ()
        self.metadata: dict[str, Any] = {}
        self.unit = ""
        self.tool = "window"
        self.lines_lps: list[tuple[np.ndarray, np.ndarray, QColor]] = []  # crosshair / reference lines
        self.show_overlay = True
        self.overlay_parts: set[str] = set(OVERLAY_PARTS)  # drawn when show_overlay is on
        self.slice_thickness_mm: float | None = None  # shown in the overlay when known
        self._pending: list[Point] = []
        self._press: QPointF | None = None
        self._last: QPointF | None = None
        self._button = Qt.MouseButton.NoButton
        self._cursor: dict[str, Any] | None = None
        self._image = vtk.vtkImageData()
        self._actor = vtk.vtkImageActor()
        self._actor.GetMapper().SetInputData(self._image)
        self._actor.GetMapper().BorderOn()  # whole pixels up to the image edge, not half the edge ones
        self._actor.GetProperty().SetInterpolationTypeToNearest()
        self._lut = vtk.vtkLookupTable()
        self._lut.SetNumberOfTableValues(256)
        self._lut.Build()
        self._actor.GetProperty().SetLookupTable(self._lut)
        self._actor.GetProperty().UseLookupTableScalarRangeOff()
        self._set_lut(inverted=False)
        self._actor.SetVisibility(False)
        self.renderer.AddActor(self._actor)
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()

    # -- public API -----------------------------------------------------------------------
    @property
    def measurements(self) -> list[Measurement]:
        """Every measurement of this view (kept in ``state``; each shown on its own plane only)."""
        return self.state.measurements

    def set_plane(self, plane: PlaneImage, key: tuple[object, ...] = ()) -> None:
        """Show ``plane``; ``key`` identifies it so measurements reappear only on their plane."""
        pixels = np.ascontiguousarray(plane.pixels)
        rows, cols = pixels.shape[:2]
        components = 1 if pixels.ndim == 2 else pixels.shape[2]
        same_shape = self.plane is not None and self.plane.pixels.shape == pixels.shape
        self.plane, self.plane_key = plane, key
        if not same_shape:
            self._image.SetDimensions(cols, rows, 1)
        self._image.SetSpacing(*self.spacing, 1.0)
        scalars = numpy_support.numpy_to_vtk(pixels.reshape(rows * cols, components), deep=True)
        self._image.GetPointData().SetScalars(scalars)
        self._image.Modified()
        self._actor.SetVisibility(True)
        self._pending.clear()
        self.request_render()

    def set_window(self, width: float, center: float) -> None:
        self.state.set_window(width, center)

    def window_level(self) -> tuple[float, float]:
        """(width, center) in modality units."""
        return self.state.window_width, self.state.window_center

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; one of {TOOLS}")
        self.tool = tool
        self._pending.clear()

    def value_at(self, col: float, row: float) -> float | None:
        return (
            None
            if self.plane is None or self.plane.pixels.ndim != 2
            else pixel_value(self.plane.pixels, (col, row))
        )

    @property
    def spacing(self) -> tuple[float, float]:
        """(column spacing, row spacing) of the shown plane in mm."""
        assert self.plane is not None
        return self.plane.pixel_spacing[1], self.plane.pixel_spacing[0]

    @property
    def calibration(self) -> Calibration:
        """Whether the shown pixels have a trustworthy size (else measurements are in px)."""
        return calibration_from_metadata(self.metadata)

    def orientation_labels(self) -> OrientationLabels:
        """Edge letters of the plane as displayed now (after flips and rotation); blank when the
        image has neither patient geometry nor Patient Orientation."""
        assert self.plane is not None
        if self.metadata.get("has_patient_geometry", True):
            return self.state.orientation_labels(self.plane.row_dir, self.plane.col_dir)
        axes = patient_orientation_axes(self.metadata.get("patient_orientation") or [])
        return OrientationLabels("", "", "", "") if axes is None else self.state.orientation_labels(*axes)

    def plane_centre_lps(self) -> np.ndarray:
        assert self.plane is not None
        rows, cols = self.plane.pixels.shape[:2]
        return self.plane.to_lps((rows - 1) / 2, (cols - 1) / 2)

    def location_text(self) -> str:
        """Where the plane lies, as the patient coordinate along its normal: e.g. ``"H 40.0 mm"``;
        empty for images without patient geometry."""
        assert self.plane is not None
        if not self.metadata.get("has_patient_geometry", True):
            return ""
        normal = np.cross(self.plane.row_dir, self.plane.col_dir)
        axis = int(np.argmax(np.abs(normal)))
        value = float(self.plane_centre_lps()[axis])
        letter = ("L", "P", "H")[axis] if value >= 0 else ("R", "A", "F")[axis]
        return f"{letter} {abs(value):.1f} mm"

    def current_position(self) -> float | None:
        """Position (mm) of the shown plane along its axis (see ``viewer.reslice``)."""
        return None if self.plane is None else float(self.plane.position_mm)

    def lps_to_screen(self, lps: np.ndarray) -> QPointF:
        assert self.plane is not None
        row, col = self.plane.from_lps(lps)
        return self.pixel_to_screen(col, row)

    # -- model -> view --------------------------------------------------------------------
    def _on_state_changed(self, what: str) -> None:
        if what == "window":
            self.window_changed.emit(self.state.window_width, self.state.window_center)
        elif what == "invert":
            self._set_lut(self.state.invert)
        elif what == "slice":
            self.slice_changed.emit(self.state.slice_index)
        self.request_render()

    def _set_lut(self, inverted: bool) -> None:
        for i in range(256):
            g = (255 - i if inverted else i) / 255.0
            self._lut.SetTableValue(i, g, g, g, 1.0)
        self._lut.Modified()

    def before_render(self) -> None:
        prop = self._actor.GetProperty()
        prop.SetColorWindow(self.state.window_width)
        prop.SetColorLevel(self.state.window_center)
        if self.plane is None:
            return
        m = self.state.display_matrix()
        matrix = vtk.vtkMatrix4x4()
        for r in range(2):
            for c in range(2):
                matrix.SetElement(r, c, m[r, c])
        self._actor.SetUserMatrix(matrix)
        centre, ppmm = self._view_geometry()
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(centre[0], centre[1], 0.0)
        camera.SetPosition(centre[0], centre[1], -1000.0)
        camera.SetViewUp(0.0, -1.0, 0.0)
        camera.SetParallelScale(self.height() / 2.0 / ppmm)
        camera.SetClippingRange(1.0, 2000.0)

    def _view_geometry(self) -> tuple[np.ndarray, float]:
        """Screen-aligned world point at the view centre (mm) and logical pixels per mm."""
        assert self.plane is not None
        rows, cols = self.plane.pixels.shape[:2]
        sc, sr = self.spacing
        m = self.state.display_matrix()
        extent = np.abs(m) @ np.array([cols * sc, rows * sr])
        fit = min(self.width() / extent[0], self.height() / extent[1])
        centre = m @ np.array([(cols - 1) / 2 * sc, (rows - 1) / 2 * sr]) + np.asarray(self.state.pan_mm)
        return centre, fit * self.state.zoom

    def screen_to_pixel(self, x: float, y: float) -> Point:
        """Widget coordinates (logical px, origin top-left) -> continuous plane pixel (col, row)."""
        centre, ppmm = self._view_geometry()
        world = centre + (np.array([x, y]) - np.array([self.width(), self.height()]) / 2) / ppmm
        mm = np.linalg.inv(self.state.display_matrix()) @ world
        assert self.plane is not None
        return float(mm[0] / self.spacing[0]), float(mm[1] / self.spacing[1])

    def pixel_to_screen(self, col: float, row: float) -> QPointF:
        assert self.plane is not None
        centre, ppmm = self._view_geometry()
        world = self.state.display_matrix() @ np.array([col * self.spacing[0], row * self.spacing[1]])
        xy = (world - centre) * ppmm + np.array([self.width(), self.height()]) / 2
        return QPointF(float(xy[0]), float(xy[1]))

    # -- input ----------------------------------------------------------------------------
    def _event_pixel(self, pos: QPointF) -> Point:
        return self.screen_to_pixel(pos.x(), pos.y())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._press = self._last = event.position()
        self._button = event.button()
        if self.plane is None or self._button != Qt.MouseButton.LeftButton:
            return
        if self.tool == "crosshair":
            self._pick(event.position())
        elif self.tool in MEASUREMENT_TOOLS:
            self._add_point(self._event_pixel(event.position()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self.plane is not None and self._last is not None and self._button != Qt.MouseButton.NoButton:
            dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
            _, ppmm = self._view_geometry()
            action = {Qt.MouseButton.RightButton: "zoom", Qt.MouseButton.MiddleButton: "pan"}.get(
                self._button, self.tool
            )
            if action == "window":
                self.state.drag_window(dx, dy)
            elif action == "pan":
                self.state.pan_by(-dx / ppmm, -dy / ppmm)
            elif action == "zoom":
                self.state.zoom_by(math.exp(-dy / 200.0))
            elif action == "crosshair":
                self._pick(pos)
            self._last = pos
        self._update_cursor(pos)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        dragged = self._press is not None and (pos - self._press).manhattanLength() > 3
        if (
            self._button == Qt.MouseButton.LeftButton
            and self.tool in ("length", "rectangle", "ellipse")
            and dragged
            and self._pending
        ):
            self._add_point(self._event_pixel(pos))
        self._press = self._last = None
        self._button = Qt.MouseButton.NoButton

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = int(round(event.angleDelta().y() / 120))
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.state.zoom_by(1.1**steps)
        else:
            self.state.scroll(-steps)  # wheel away from the user: previous slice

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        name = _KEY_NAMES.get(Qt.Key(event.key())) or event.text().upper()
        action = self.state.key_bindings().get(name)
        if action is None:
            super().keyPressEvent(event)
        else:
            action()

    def _pick(self, pos: QPointF) -> None:
        assert self.plane is not None
        col, row = self._event_pixel(pos)
        self.point_picked.emit(self.plane.to_lps(row, col))

    def _add_point(self, point: Point) -> None:
        assert self.plane is not None
        self._pending.append(point)
        if len(self._pending) == POINTS_NEEDED[self.tool]:
            points_lps = None
            if self.metadata.get("has_patient_geometry", True):
                points_lps = [tuple(float(v) for v in self.plane.to_lps(r, c)) for c, r in self._pending]
            m = measure(
                self.tool,
                list(self._pending),
                self.plane.pixels,
                self.spacing,
                self.plane_key,
                self.calibration,
                points_lps,  # type: ignore[arg-type]
            )
            self._pending.clear()
            self.state.add_measurement(m)
            self.measurement_added.emit(m)
        self.update()

    def _update_cursor(self, pos: QPointF) -> None:
        if self.plane is None:
            return
        col, row = self._event_pixel(pos)
        value = self.value_at(col, row)
        self._cursor = (
            None
            if value is None
            else {
                "col": int(round(col)),
                "row": int(round(row)),
                "value": value,
                "lps": self.plane.to_lps(row, col),
            }
        )
        self.cursor_value_changed.emit(self._cursor)
        self.update()

    # -- overlay --------------------------------------------------------------------------
    def overlay_corners(self) -> dict[str, list[str]]:
        """Corner texts; subclasses add patient/series lines."""
        ww, wc = self.window_level()
        where = self.location_text() if self.plane is not None else ""
        location = f"Loc: {where}" if where else ""
        if self.plane is not None and self.plane.slab_mm:
            location += f"  Slab: {self.plane.slab_mm:g} mm {self.plane.slab_mode.upper()}"
        elif self.slice_thickness_mm:
            location += f"  Thk: {self.slice_thickness_mm:.1f} mm"
        bottom_left = [location]
        if self._cursor is not None:
            c = self._cursor
            bottom_left.append(f"({c['col']}, {c['row']}): {c['value']:.0f} {self.unit}".rstrip())
        return {
            "top_left": [],
            "top_right": [],
            "bottom_left": bottom_left,
            "bottom_right": [f"W: {ww:.0f} L: {wc:.0f}", f"Zoom: {self.state.zoom:.2f}x"],
        }

    def paint_overlay(self, painter: QPainter) -> None:
        if self.plane is None or not self.show_overlay:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont()
        font.setPixelSize(12)
        painter.setFont(font)
        parts = self.overlay_parts
        if "lines" in parts:
            self._paint_lines(painter)
        if "measurements" in parts:
            self._paint_measurements(painter)
        self._paint_texts(painter, corners="text" in parts, labels="labels" in parts)
        if "scale" in parts:
            self._paint_scale_bar(painter)

    def _paint_texts(self, painter: QPainter, corners: bool = True, labels: bool = True) -> None:
        w, h, line = self.width(), self.height(), 14
        painter.setPen(_TEXT)
        for corner, lines in self.overlay_corners().items() if corners else ():
            top = corner.startswith("top")
            align = Qt.AlignmentFlag.AlignRight if corner.endswith("right") else Qt.AlignmentFlag.AlignLeft
            lines = [text for text in lines if text.strip()]
            for n, text in enumerate(lines):
                y = 4 + n * line if top else h - 4 - (len(lines) - n) * line
                _shadowed_text(painter, 4, y, w - 8, line, align, text)
        if labels:
            self._paint_orientation_labels(painter)

    def _paint_orientation_labels(self, painter: QPainter) -> None:
        w, h = self.width(), self.height()
        labels = self.orientation_labels()
        painter.setPen(_YELLOW)
        centre = Qt.AlignmentFlag.AlignCenter
        _shadowed_text(
            painter,
            2,
            h // 2 - 10,
            30,
            20,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            labels.left,
        )
        _shadowed_text(
            painter,
            w - 32,
            h // 2 - 10,
            30,
            20,
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            labels.right,
        )
        _shadowed_text(painter, w // 2 - 20, 2, 40, 16, centre, labels.top)
        _shadowed_text(painter, w // 2 - 20, h - 18, 40, 16, centre, labels.bottom)

    def _paint_scale_bar(self, painter: QPainter) -> None:
        """A vertical ruler along the right edge, below the orientation label; none when the pixel
        size is unknown, "at detector" when it is Imager Pixel Spacing."""
        calibration = self.calibration
        if not calibration.known:
            return
        _, ppmm = self._view_geometry()
        length = nice_length(self.height() * 0.25 / ppmm)
        px = length * ppmm
        x, y0 = self.width() - 8.0, self.height() / 2 + 20.0
        painter.setPen(QPen(_TEXT, 1))
        painter.drawLine(QPointF(x, y0), QPointF(x, y0 + px))
        for y in (y0, y0 + px / 2, y0 + px):
            painter.drawLine(QPointF(x - (5 if y != y0 + px / 2 else 3), y), QPointF(x, y))
        _shadowed_text(
            painter,
            int(x) - 150,
            int(y0 + px) + 2,
            146,
            14,
            Qt.AlignmentFlag.AlignRight,
            f"{length:g} mm{calibration.suffix()}",
        )

    def _paint_lines(self, painter: QPainter) -> None:
        assert self.plane is not None
        for a, b, colour in self.lines_lps:
            painter.setPen(QPen(colour, 1))
            painter.drawLine(self.lps_to_screen(a), self.lps_to_screen(b))

    def _paint_measurements(self, painter: QPainter) -> None:
        painter.setPen(QPen(_YELLOW, 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for m in self.state.measurements_on(self.plane_key):
            pts = [self.pixel_to_screen(*p) for p in m.points]
            if m.kind in ("length", "angle"):
                painter.drawPolyline(pts)
            else:
                self._paint_roi_shape(painter, m.kind, pts)
            anchor = pts[-1]
            _shadowed_text(
                painter,
                int(anchor.x()) + 6,
                int(anchor.y()) + 4,
                260,
                30,
                Qt.AlignmentFlag.AlignLeft,
                m.text(self.unit),
            )
        for p in self._pending:
            q = self.pixel_to_screen(*p)
            painter.drawEllipse(q, 2.5, 2.5)

    @staticmethod
    def _paint_roi_shape(painter: QPainter, kind: str, pts: list[QPointF]) -> None:
        (a, b) = pts
        if kind == "rectangle":
            painter.drawPolygon([a, QPointF(b.x(), a.y()), b, QPointF(a.x(), b.y())])
        else:
            # an ellipse under rotation by multiples of 90 degrees stays axis-aligned on screen
            painter.drawEllipse(
                QPointF((a.x() + b.x()) / 2, (a.y() + b.y()) / 2),
                abs(b.x() - a.x()) / 2,
                abs(b.y() - a.y()) / 2,
            )

    def describe(self) -> dict[str, object]:
        """What this view shows, for the app shell and the AI assistant."""
        info = self.state.describe()
        info["pixel_spacing_known"] = self.calibration.known
        info["pixel_spacing_source"] = self.metadata.get("pixel_spacing_source")
        if self.plane is not None:
            info["plane_origin_lps"] = [round(float(v), 3) for v in self.plane.origin]
            info["plane_normal_lps"] = [
                round(float(v), 4) for v in np.cross(self.plane.row_dir, self.plane.col_dir)
            ]
            info["position_mm"] = round(float(self.plane.position_mm), 3)
            info["location"] = self.location_text()
            info["plane_centre_lps"] = [round(float(v), 3) for v in self.plane_centre_lps()]
            if self.plane.slab_mm:
                info["slab"] = {"thickness_mm": self.plane.slab_mm, "mode": self.plane.slab_mode}
            info["measurements"] = [m.to_dict(self.unit) for m in self.state.measurements_on(self.plane_key)]
        return info


class StackView(SliceView):
    """Scrolls through the slices of a volume, with presets and patient/series overlay.

    The stack is the acquired ("native") slices unless ``set_volume(..., plane=...)`` asks for an
    axial/coronal/sagittal stack (optionally thick: ``set_slab``); ``show_position(mm)`` shows the
    plane at any position. ``viewer.qt.snapshot`` renders through this class, so a snapshot is what
    this view shows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.volume: Any = None
        self.stack_plane: Plane = "native"
        self.slab_mm = 0.0
        self.slab_mode: SlabMode = "mip"
        self._pinned: PlaneImage | None = None  # shown once instead of the indexed slice

    def set_volume(
        self, volume: Any, metadata: dict[str, Any] | None = None, plane: Plane = "native"
    ) -> None:
        """Show ``volume`` (a ``viewer.volume.Volume``) from its middle slice with its default window;
        ``plane`` picks the stack ("native": the acquired slices). Measurements are kept when the
        same volume is shown again (e.g. in another plane) and cleared for a new one."""
        if volume is not self.volume:
            self.state.clear_measurements()
        self.volume = volume
        self.stack_plane = plane
        self.slab_mm, self.slab_mode = 0.0, "mip"
        self.metadata = {**volume.metadata, **(metadata or {})}
        self.unit = modality_unit(self.metadata)
        lo, hi = value_range(volume)
        if volume.is_color:  # RGB is shown as stored: window 0..255 maps each channel to itself
            self.state.default_window = (255.0, 127.5)
        else:
            preset = default_window(self.metadata, (lo, hi))
            self.state.default_window = (preset.window, preset.level)
        self.state.wl_step_per_pixel = max(hi - lo, 1.0) / 512.0
        self.state.plane = plane if isinstance(plane, str) else "oblique"
        self.slice_thickness_mm = (
            float(volume.spacing[2])
            if self.metadata.get("has_patient_geometry", True) and plane == "native"
            else None
        )
        count = volume.voxels.shape[0] if plane == "native" else len(plane_positions(volume, plane))
        self.state.slice_count = count
        self.state.slice_index = count // 2
        self.state.reset()
        if self.metadata.get("invert"):  # MONOCHROME1: low values are displayed bright
            self.state.toggle_invert()
        self._show_slice()

    def presets(self) -> list[WindowPreset]:
        """The file's own windows first, then the modality's standard presets."""
        return presets_for(self.metadata)

    def apply_preset(self, name: str) -> None:
        for preset in self.presets():
            if preset.name == name:
                self.state.set_window(preset.window, preset.level)
                return
        raise KeyError(f"no window preset named {name!r}")

    def set_slice(self, index: int) -> None:
        self.state.set_slice(index)

    def set_slab(self, thickness_mm: float, mode: SlabMode = "mip") -> None:
        """Thick-slab rendering of the stack (0: thin)."""
        self.slab_mm, self.slab_mode = float(thickness_mm), mode
        if self.volume is not None:
            self._show_slice()

    def show_position(self, position_mm: float) -> None:
        """Show the stack's plane at ``position_mm`` (mm along its normal, as
        ``viewer.reslice.plane_positions``); the slice counter shows the nearest slice.
        Raises ValueError for a position outside the volume (nothing changes then)."""
        image = plane_image(
            self.volume, self.stack_plane, position_mm, slab_mm=self.slab_mm, slab_mode=self.slab_mode
        )
        positions = plane_positions(self.volume, self.stack_plane)
        nearest = int(np.argmin(np.abs(positions - position_mm)))
        self._pinned = image
        if nearest != self.state.slice_index:
            self.state.set_slice(nearest)  # shows the pinned image
        else:
            self._show_slice()

    def current_slice_index(self) -> int:
        return self.state.slice_index

    def current_plane(self) -> PlaneImage | None:
        return self.plane

    def _on_state_changed(self, what: str) -> None:
        if what == "slice" and self.volume is not None:
            self._show_slice()
        super()._on_state_changed(what)

    def _show_slice(self) -> None:
        k = self.state.slice_index
        pinned, self._pinned = self._pinned, None
        if pinned is not None:
            self.set_plane(pinned, (self.stack_plane, "mm", round(pinned.position_mm, 3), self.slab_mm))
            return
        image = plane_image(
            self.volume, self.stack_plane, index=k, slab_mm=self.slab_mm, slab_mode=self.slab_mode
        )
        key = (
            (self.stack_plane, k) if not self.slab_mm else (self.stack_plane, k, self.slab_mm, self.slab_mode)
        )
        self.set_plane(image, key)

    def overlay_corners(self) -> dict[str, list[str]]:
        corners = super().overlay_corners()
        md = self.metadata
        corners["top_left"] = [
            meta_text(md, "patient_name", "PatientName"),
            meta_text(md, "patient_id", "PatientID"),
            meta_text(md, "study_description", "StudyDescription"),
            meta_text(md, "study_date", "StudyDate"),
        ]
        corners["top_right"] = [
            meta_text(md, "series_description", "SeriesDescription"),
            f"{meta_text(md, 'modality', 'Modality')} "
            f"Se: {meta_text(md, 'series_number', 'SeriesNumber') or '-'}",
            f"Im: {self.state.slice_index + 1}/{self.state.slice_count}",
        ]
        return corners
