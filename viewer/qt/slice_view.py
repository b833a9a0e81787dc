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
from collections.abc import Callable
from typing import Any

import numpy as np
import vtk
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPen,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QInputDialog, QWidget
from vtk.util import numpy_support

from viewer.objects.overlays import OverlayFrame
from viewer.presets import WindowPreset, default_window, presets_for
from viewer.qt.canvas import VtkCanvas
from viewer.reslice import (
    Plane,
    PlaneImage,
    SlabMode,
    plane_image,
    plane_positions,
    stack_step_count,
    value_range,
)
from viewer.tools import (
    POINTS_NEEDED,
    Calibration,
    Measurement,
    Point,
    calibration_from_metadata,
    measure,
    pixel_value,
)
from viewer.view_state import (
    OrientationLabels,
    ViewState,
    displayed_image,
    patient_orientation_axes,
)

MEASUREMENT_TOOLS = tuple(POINTS_NEEDED)
TOOLS = ("window", "pan", "zoom", "crosshair") + MEASUREMENT_TOOLS
HANDLE_PX = 7.0  # how close (screen px) a click must be to grab a measurement's handle or line
OVERLAY_PARTS = ("lines", "measurements", "text", "labels", "scale")  # what ``overlay_parts`` may hold
_YELLOW = QColor(255, 220, 0)
_TEXT = QColor(230, 230, 230)
_SELECTED = QColor(0, 230, 255)


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


def segment_distance(p: QPointF, a: QPointF, b: QPointF) -> float:
    """Screen distance from ``p`` to the segment ``a``-``b``."""
    ab = np.array([b.x() - a.x(), b.y() - a.y()])
    ap = np.array([p.x() - a.x(), p.y() - a.y()])
    t = float(np.clip(ap @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(ap - t * ab))


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

    def __init__(self, parent: QWidget | None = None, state: ViewState | None = None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else ViewState()  # the model this view observes
        self.state.changed.connect(self._on_state_changed)
        self.volume: Any = None
        self.plane: PlaneImage | None = None
        self.plane_key: tuple[object, ...] = ()
        self.metadata: dict[str, Any] = {}
        self.unit = ""
        self.tool = "window"
        self.lines_lps: list[tuple[np.ndarray, np.ndarray, QColor]] = []  # crosshair / reference lines
        self.object_layers: list = []  # viewer.objects.overlays layers (SEG, RTSTRUCT) drawn over the image
        self._layer_frames: dict[int, tuple[object, frozenset[int], OverlayFrame]] = {}
        self.show_overlay = True
        self.overlay_parts: set[str] = set(OVERLAY_PARTS)  # drawn when show_overlay is on
        self.slice_thickness_mm: float | None = None  # shown in the overlay when known
        self._pending: list[Point] = []
        self._dragging: tuple[Measurement, int | None] | None = None  # a measurement handle being moved
        self.ask_text: Callable[[], str | None] = self._ask_annotation_text  # the text tool's prompt
        self.overlay_texts: list[tuple[str, QRectF]] = []  # texts of the last paint and where they went
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

    def detach(self) -> None:
        """Stop observing the state (the view is going away; the state lives on in the model)."""
        if self._on_state_changed in self.state.changed:
            self.state.changed.disconnect(self._on_state_changed)

    # -- model -> view --------------------------------------------------------------------
    def displayed(self):
        """What this view shows (``viewer.view_state.displayed_image`` of its volume and state)."""
        return displayed_image(self.volume, self.state)

    def show_displayed(self) -> None:
        """Render the plane the state asks for (slice, exact position, geometry, slab)."""
        plane = self.displayed().plane
        self.set_plane(plane, self.plane_key_for(plane))

    def plane_key_for(self, plane: PlaneImage) -> tuple[object, ...]:
        """What identifies the shown plane for the measurements drawn on it."""
        state = self.state
        if state.position_mm is not None:
            return (state.geometry, "mm", round(plane.position_mm, 3), state.slab_mm)
        if state.slab_mm:
            return (state.geometry, state.slice_index, state.slab_mm, state.slab_mode)
        return (state.geometry, state.slice_index)

    def _on_state_changed(self, what: str) -> None:
        if what in ("slice", "plane", "slab") and self.volume is not None:
            self.show_displayed()
        if what == "window":
            self.window_changed.emit(self.state.window_width, self.state.window_center)
        elif what == "invert":
            self._set_lut(self.state.invert)
        elif what == "slice":
            self.slice_changed.emit(self.state.slice_index)
        elif what == "goto" and self.state.goto_target is not None:
            self.go_to(self.state.goto_target)
        self.request_render()

    def go_to(self, measurement: Measurement) -> None:
        """Show the plane ``measurement`` is on (its slice of this stack)."""
        key = measurement.plane_key
        if len(key) >= 2 and key[0] == self.state.geometry and isinstance(key[1], int):
            self.state.set_slice(key[1])

    def _set_lut(self, inverted: bool) -> None:
        for i in range(256):
            g = (255 - i if inverted else i) / 255.0
            self._lut.SetTableValue(i, g, g, g, 1.0)
        self._lut.Modified()

    def before_render(self) -> None:
        prop = self._actor.GetProperty()
        if self.state.interpolation == "linear":
            prop.SetInterpolationTypeToLinear()
        else:
            prop.SetInterpolationTypeToNearest()
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

    def _moves_crosshair(self, event: QMouseEvent) -> bool:
        """The crosshair follows the mouse with the crosshair tool, or Ctrl with any tool."""
        return self.tool == "crosshair" or bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._press = self._last = event.position()
        self._button = event.button()
        self._dragging = None
        if self.plane is None or self._button != Qt.MouseButton.LeftButton:
            return
        pos = event.position()
        if self._moves_crosshair(event):
            self._pick(pos)
            return
        hit = None if self._pending else self.measurement_at(pos)
        if hit is not None:
            self.state.select(hit[0])
            self._dragging = hit
            return
        self.state.select(None)
        if self.tool in MEASUREMENT_TOOLS:
            self._add_point(self._event_pixel(pos))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self.plane is not None and self._last is not None and self._button != Qt.MouseButton.NoButton:
            dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
            _, ppmm = self._view_geometry()
            action = {Qt.MouseButton.RightButton: "zoom", Qt.MouseButton.MiddleButton: "pan"}.get(
                self._button, self.tool
            )
            if self._dragging is not None:
                self._move_handle(pos)
            elif self._button == Qt.MouseButton.LeftButton and self._moves_crosshair(event):
                self._pick(pos)
            elif action == "window":
                self.state.drag_window(dx, dy)
            elif action == "pan":
                self.state.pan_by(-dx / ppmm, -dy / ppmm)
            elif action == "zoom":
                self.state.zoom_by(math.exp(-dy / 200.0))
            self._last = pos
        self._update_cursor(pos)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        dragged = self._press is not None and (pos - self._press).manhattanLength() > 3
        if (
            self._button == Qt.MouseButton.LeftButton
            and self._dragging is None
            and self.tool in ("length", "rectangle", "ellipse", "arrow")
            and dragged
            and self._pending
        ):
            self._add_point(self._event_pixel(pos))
        self._press = self._last = None
        self._dragging = None
        self._button = Qt.MouseButton.NoButton

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = int(round(event.angleDelta().y() / 120))
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.state.zoom_by(1.1**steps)
        else:
            self.state.scroll(-steps)  # wheel away from the user: previous slice

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        name = QKeySequence(event.key()).toString()
        action = self.state.key_bindings().get(name)
        if action is None:
            super().keyPressEvent(event)
        else:
            action()

    def _pick(self, pos: QPointF) -> None:
        assert self.plane is not None
        col, row = self._event_pixel(pos)
        self.point_picked.emit(self.plane.to_lps(row, col))

    # -- measurements and annotations ---------------------------------------------------------
    def measurement_at(self, pos: QPointF) -> tuple[Measurement, int | None] | None:
        """The measurement under the mouse on the shown plane and the handle grabbed (None: the
        whole shape, moved as one), topmost first."""
        for m in reversed(self.state.measurements_on(self.plane_key)):
            pts = [self.pixel_to_screen(*p) for p in m.points]
            for i, p in enumerate(pts):
                if math.dist((p.x(), p.y()), (pos.x(), pos.y())) <= HANDLE_PX:
                    return m, i
            if m.kind in ("rectangle", "ellipse"):
                box = (
                    QRectF(pts[0], pts[1]).normalized().adjusted(-HANDLE_PX, -HANDLE_PX, HANDLE_PX, HANDLE_PX)
                )
                if box.contains(pos):
                    return m, None
            elif m.kind == "text":
                if self._label_rect(pts[0]).contains(pos):
                    return m, None
            elif any(segment_distance(pos, a, b) <= HANDLE_PX for a, b in zip(pts, pts[1:])):
                return m, None
        return None

    def _move_handle(self, pos: QPointF) -> None:
        """Drag a handle (or, with ``None``, the whole measurement) and measure again."""
        assert self.plane is not None and self._dragging is not None and self._last is not None
        m, handle = self._dragging
        col, row = self._event_pixel(pos)
        if handle is None:
            c0, r0 = self._event_pixel(self._last)
            points = [(c + col - c0, r + row - r0) for c, r in m.points]
        else:
            points = list(m.points)
            points[handle] = (col, row)
        try:
            moved = self._measure(m.kind, points, m.label)
        except ValueError:
            return  # degenerate while dragging (e.g. an empty ROI): keep the last valid shape
        self.state.replace_measurement(m, moved)
        self._dragging = (moved, handle)

    def _measure(self, kind: str, points: list[Point], label: str = "") -> Measurement:
        assert self.plane is not None
        points_lps = None
        if self.metadata.get("has_patient_geometry", True):
            points_lps = [tuple(float(v) for v in self.plane.to_lps(r, c)) for c, r in points]
        return measure(
            kind,
            points,
            self.plane.pixels,
            self.spacing,
            self.plane_key,
            self.calibration,
            points_lps,  # type: ignore[arg-type]
            label=label,
        )

    def _ask_annotation_text(self) -> str | None:
        text, ok = QInputDialog.getText(self, "Annotation", "Text:")
        return text.strip() if ok and text.strip() else None

    def _add_point(self, point: Point) -> None:
        assert self.plane is not None
        if self._pending and math.dist(self._pending[-1], point) < 1.0:
            self._pending.clear()  # a second click on the same spot: no zero-size measurement
            self.update()
            return
        self._pending.append(point)
        if len(self._pending) == POINTS_NEEDED[self.tool]:
            points, self._pending = list(self._pending), []
            label = ""
            if self.tool == "text":
                label = self.ask_text() or ""
                if not label:
                    self.update()
                    return
            try:
                m = self._measure(self.tool, points, label)
            except ValueError:  # e.g. an ROI too thin to hold a pixel centre: nothing is added
                self.update()
                return
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
        bottom_left = [f"Loc: {where}" if where else ""]
        if self.plane is not None and self.plane.slab_mm:
            bottom_left.append(f"Slab: {self.plane.slab_mm:g} mm {self.plane.slab_mode.upper()}")
        elif self.slice_thickness_mm:
            bottom_left.append(f"Thk: {self.slice_thickness_mm:.1f} mm")
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
        self.overlay_texts = []
        if self.plane is None or not self.show_overlay:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont()
        font.setPixelSize(12)
        painter.setFont(font)
        parts = self.overlay_parts
        self._paint_object_layers(painter)
        if "lines" in parts:
            self._paint_lines(painter)
        if "measurements" in parts:
            self._paint_measurements(painter)
        if "labels" in parts:
            self._paint_orientation_labels(painter)
        if "text" in parts:
            self._paint_corners(painter)
        if "scale" in parts:
            self._paint_scale_bar(painter)

    def _place_text(self, painter: QPainter, rect: QRectF, flags: Qt.AlignmentFlag, text: str) -> bool:
        """Draw ``text`` in ``rect`` unless it would overlap text already placed; records where."""
        drawn = QFontMetrics(painter.font()).boundingRect(rect.toRect(), int(flags), text)
        if not text.strip() or any(drawn.intersects(r.toRect()) for _, r in self.overlay_texts):
            return False
        _shadowed_text(painter, *rect.toRect().getRect(), flags, text)
        self.overlay_texts.append((text, QRectF(drawn)))
        return True

    def _paint_orientation_labels(self, painter: QPainter) -> None:
        """The four edge letters, in boxes the corner texts keep clear of."""
        w, h = self.width(), self.height()
        labels = self.orientation_labels()
        painter.setPen(_YELLOW)
        vcentre, centre = Qt.AlignmentFlag.AlignVCenter, Qt.AlignmentFlag.AlignCenter
        self._place_text(
            painter, QRectF(2, h / 2 - 10, 30, 20), Qt.AlignmentFlag.AlignLeft | vcentre, labels.left
        )
        self._place_text(
            painter, QRectF(w - 32, h / 2 - 10, 30, 20), Qt.AlignmentFlag.AlignRight | vcentre, labels.right
        )
        self._place_text(painter, QRectF(w / 2 - 20, 2, 40, 16), centre, labels.top)
        self._place_text(painter, QRectF(w / 2 - 20, h - 18, 40, 16), centre, labels.bottom)

    def _paint_corners(self, painter: QPainter) -> None:
        """Corner texts, each line elided to end before the centred edge letters; lines that
        would reach the side letters are left out."""
        w, h, line = self.width(), self.height(), 14
        painter.setPen(_TEXT)
        metrics = QFontMetrics(painter.font())
        room = max(int(w / 2 - 26), 10)
        for corner, lines in self.overlay_corners().items():
            top = corner.startswith("top")
            right = corner.endswith("right")
            align = Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft
            lines = [text for text in lines if text.strip()]
            for n, text in enumerate(lines):
                y = 4 + n * line if top else h - 4 - (len(lines) - n) * line
                if abs(y + line / 2 - h / 2) < 10 + line / 2 + 2:
                    continue  # would touch the L/R letters at mid height
                x = w - 4 - room if right else 4
                text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, room)
                self._place_text(painter, QRectF(x, y, room, line), align, text)

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
        self._place_text(
            painter,
            QRectF(int(x) - 150, int(y0 + px) + 2, 146, 14),
            Qt.AlignmentFlag.AlignRight,
            f"{length:g} mm{calibration.suffix()}",
        )

    def layer_frame(self, layer) -> OverlayFrame:
        """A layer's overlay on the shown plane (computed once per plane and set of hidden items)."""
        assert self.plane is not None
        hidden = frozenset(layer.hidden)
        cached = self._layer_frames.get(id(layer))
        if cached is None or cached[0] is not self.plane or cached[1] != hidden:
            cached = (self.plane, hidden, layer.frame_for(self.plane))
            self._layer_frames[id(layer)] = cached
        return cached[2]

    def _paint_object_layers(self, painter: QPainter) -> None:
        assert self.plane is not None
        rows, cols = self.plane.pixels.shape[:2]
        for layer in self.object_layers:
            frame = self.layer_frame(layer)
            if frame.rgba is not None:
                image = QImage(frame.rgba.data, cols, rows, cols * 4, QImage.Format.Format_RGBA8888)
                o, x, y = (
                    self.pixel_to_screen(*p) for p in ((-0.5, -0.5), (cols - 0.5, -0.5), (-0.5, rows - 0.5))
                )
                painter.save()
                painter.setTransform(
                    QTransform(
                        (x.x() - o.x()) / cols,
                        (x.y() - o.y()) / cols,
                        (y.x() - o.x()) / rows,
                        (y.y() - o.y()) / rows,
                        o.x(),
                        o.y(),
                    )  # fmt: skip
                )
                painter.drawImage(0, 0, image)
                painter.restore()
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for line in frame.polylines:
                painter.setPen(QPen(QColor(*line.colour), 1.5))
                points = [self.pixel_to_screen(col, row) for col, row in line.points]
                if line.closed:
                    painter.drawPolygon(points)
                else:
                    painter.drawPolyline(points)
                if line.label and points:
                    top_left = min(points, key=lambda p: (p.y(), p.x()))
                    _shadowed_text(
                        painter, int(top_left.x()) + 4, int(top_left.y()) + 2, 200, 16,
                        Qt.AlignmentFlag.AlignLeft, line.label,
                    )  # fmt: skip

    def image_rect(self) -> QRectF:
        """The screen rectangle the shown plane covers (inside the widget)."""
        assert self.plane is not None
        rows, cols = self.plane.pixels.shape[:2]
        corners = [self.pixel_to_screen(c, r) for c in (-0.5, cols - 0.5) for r in (-0.5, rows - 0.5)]
        xs, ys = [p.x() for p in corners], [p.y() for p in corners]
        box = QRectF(QPointF(min(xs), min(ys)), QPointF(max(xs), max(ys)))
        return box.intersected(QRectF(self.rect()))

    def _paint_lines(self, painter: QPainter) -> None:
        """Crosshair/reference lines, clipped to the image so they never reach the pane's edge."""
        assert self.plane is not None
        painter.save()
        painter.setClipRect(self.image_rect())
        for a, b, colour in self.lines_lps:
            painter.setPen(QPen(colour, 1))
            painter.drawLine(self.lps_to_screen(a), self.lps_to_screen(b))
        painter.restore()

    def _label_rect(self, anchor: QPointF) -> QRectF:
        return QRectF(anchor.x() + 6, anchor.y() + 4, 260, 30)

    def _paint_measurements(self, painter: QPainter) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for m in self.state.measurements_on(self.plane_key):
            selected = m is self.state.selected
            painter.setPen(QPen(_SELECTED if selected else _YELLOW, 2.5 if selected else 1.5))
            pts = [self.pixel_to_screen(*p) for p in m.points]
            if m.kind in ("length", "angle"):
                painter.drawPolyline(pts)
            elif m.kind == "arrow":
                self._paint_arrow(painter, pts[0], pts[1])
            elif m.kind in ("rectangle", "ellipse"):
                self._paint_roi_shape(painter, m.kind, pts)
            if selected:
                for p in pts:
                    painter.drawRect(QRectF(p.x() - 3, p.y() - 3, 6, 6))
            anchor = pts[-1] if m.kind != "arrow" else pts[0]
            rect = self._label_rect(anchor)
            _shadowed_text(painter, *rect.toRect().getRect(), Qt.AlignmentFlag.AlignLeft, m.text(self.unit))
        painter.setPen(QPen(_YELLOW, 1.5))
        for p in self._pending:
            q = self.pixel_to_screen(*p)
            painter.drawEllipse(q, 2.5, 2.5)

    @staticmethod
    def _paint_arrow(painter: QPainter, tail: QPointF, head: QPointF) -> None:
        painter.drawLine(tail, head)
        angle = math.atan2(head.y() - tail.y(), head.x() - tail.x())
        for side in (-1, 1):
            a = angle + math.pi - side * math.radians(25)
            painter.drawLine(head, QPointF(head.x() + 10 * math.cos(a), head.y() + 10 * math.sin(a)))

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

    @property
    def stack_plane(self) -> Plane:
        return self.state.geometry

    @property
    def slab_mm(self) -> float:
        return self.state.slab_mm

    @property
    def slab_mode(self) -> SlabMode:
        return self.state.slab_mode

    def set_volume(
        self, volume: Any, metadata: dict[str, Any] | None = None, plane: Plane = "native"
    ) -> None:
        """Show ``volume`` (a ``viewer.volume.Volume``) from its middle slice with its default window;
        ``plane`` picks the stack ("native": the acquired slices). A new volume starts thin, without
        measurements; the volume the state already shows (a rebuilt viewport, another plane) keeps
        its measurements, and in the same plane everything the reader set."""
        state = self.state
        same = volume is state.source
        self.volume = volume
        self.metadata = {**volume.metadata, **(metadata or {})}
        self.unit = modality_unit(self.metadata)
        lo, hi = value_range(volume)
        if volume.is_color:  # RGB is shown as stored: window 0..255 maps each channel to itself
            state.default_window = (255.0, 127.5)
        else:
            preset = default_window(self.metadata, (lo, hi))
            state.default_window = (preset.window, preset.level)
        state.wl_step_per_pixel = max(hi - lo, 1.0) / 512.0
        self.slice_thickness_mm = (
            float(volume.spacing[2])
            if self.metadata.get("has_patient_geometry", True) and plane == "native"
            else None
        )
        count = stack_step_count(volume, plane)
        if same and state.geometry == plane and state.slice_count == count:
            self.show_displayed()
            return
        if not same:
            state.clear_measurements()
            state.slab_mm, state.slab_mode = 0.0, "mip"  # slab settings do not carry to another series
            state.source = volume
        state.geometry, state.plane = plane, plane if isinstance(plane, str) else "oblique"
        state.slice_count, state.slice_index, state.position_mm = count, count // 2, None
        state.reset()
        if self.metadata.get("invert"):  # MONOCHROME1: low values are displayed bright
            state.toggle_invert()
        self.show_displayed()

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
        self.state.set_slab(thickness_mm, mode)

    def show_position(self, position_mm: float) -> None:
        """Show the stack's plane at ``position_mm`` (mm along its normal, as
        ``viewer.reslice.plane_positions``); the slice counter shows the nearest slice.
        Raises ValueError for a position outside the volume (nothing changes then)."""
        plane_image(self.volume, self.stack_plane, position_mm)  # refuses a position outside
        positions = plane_positions(self.volume, self.stack_plane)
        self.state.set_position(position_mm, int(np.argmin(np.abs(positions - position_mm))))

    def current_slice_index(self) -> int:
        return self.state.slice_index

    def current_plane(self) -> PlaneImage | None:
        return self.plane

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
