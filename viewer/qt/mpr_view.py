"""Linked axial/coronal/sagittal views around one crosshair, with oblique planes and thick slabs.

Clicking or dragging in a view with the crosshair tool (or Ctrl with any tool) moves the shared
``Crosshair``; the other views reslice through the new point. Dragging a reference line by its disc
handle (or Shift+drag) rotates the other two planes about the view's normal (oblique MPR).
Each plane's ``ViewState`` holds its geometry, position and slab; the views render from it.
Each view draws the other planes' intersection lines (reference lines) through
the crosshair. Window/level is linked across the three views.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter
from PySide6.QtWidgets import QHBoxLayout, QWidget

from viewer.presets import default_window
from viewer.qt.slice_view import HANDLE_PX, SliceView, modality_unit
from viewer.reslice import STANDARD_PLANES, Oblique, plane_positions, value_range
from viewer.view_state import Crosshair, Event, ViewState

PLANES = ("axial", "coronal", "sagittal")
PLANE_COLOURS = {
    "axial": QColor(80, 160, 255),
    "coronal": QColor(80, 220, 80),
    "sagittal": QColor(255, 90, 90),
}
PANE_GAP_PX = 6
GUTTER_COLOUR = "#5a5a5a"  # between the panes
ROTATE_HANDLE_SHARE = 0.35  # rotation handles sit this share of the pane's size from the centre


def rotation_about(axis: np.ndarray, radians: float) -> np.ndarray:
    """Right-handed rotation matrix about a unit axis (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(radians) * k + (1 - math.cos(radians)) * (k @ k)


class MprPlaneView(SliceView):
    """One plane of the MPR: with the crosshair tool a click or drag moves the crosshair; a drag
    from a rotation handle (the discs on the reference lines) rotates the other two planes about
    this plane's normal (oblique MPR, as in Slicer/Horos); Shift+drag sets that angle directly."""

    angle_picked = Signal(float)  # radians, in-plane angle of the other planes around the crosshair

    def __init__(self, name: str, parent: QWidget | None = None, state: ViewState | None = None) -> None:
        super().__init__(parent, state)
        self.name = name
        self.state.plane = self.state.geometry = name
        self.tool = "crosshair"
        self.centre_lps = np.zeros(3)
        self.angle = lambda: 0.0  # this plane's rotation of the others (set by MprView)
        self._rotating: tuple[float, float] | None = None  # (mouse angle, plane angle) at the press

    def show_displayed(self) -> None:
        if self.state.position_mm is not None:  # MPR planes are placed by the crosshair only
            super().show_displayed()

    def plane_key_for(self, plane) -> tuple[object, ...]:
        normal = np.cross(plane.row_dir, plane.col_dir)
        key = (self.name, round(plane.position_mm, 3), tuple(np.round(normal, 4)))
        return key + ((self.state.slab_mm, self.state.slab_mode) if self.state.slab_mm else ())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.plane is not None and self._button == Qt.MouseButton.LeftButton:
            if self._rotating is not None:
                start_mouse, start_angle = self._rotating
                self._last = event.position()
                self.angle_picked.emit(start_angle + self._plane_angle(event.position()) - start_mouse)
                return
            if self.tool == "crosshair" and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._last = event.position()
                self.angle_picked.emit(self._plane_angle(event.position()))
                return
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._rotating = None
        if (
            self.tool == "crosshair"
            and self.plane is not None
            and event.button() == Qt.MouseButton.LeftButton
        ):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._press = self._last = event.position()
                self._button = event.button()
                return
            if self.on_line_end(event.position()):
                self._press = self._last = event.position()
                self._button = event.button()
                self._rotating = (self._plane_angle(event.position()), self.angle())
                return
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._rotating = None
        super().mouseReleaseEvent(event)

    def rotation_handles(self) -> list[QPointF]:
        """Screen points on the reference lines (a fixed share of the pane from the centre) where a
        crosshair-tool drag rotates the other planes; drawn as small discs."""
        if self.plane is None:
            return []
        centre = self.lps_to_screen(self.centre_lps)
        reach = ROTATE_HANDLE_SHARE * min(self.width(), self.height())
        handles = []
        for a, b, _colour in self.lines_lps:
            pa, pb = self.lps_to_screen(a), self.lps_to_screen(b)
            dx, dy = pb.x() - pa.x(), pb.y() - pa.y()
            norm = math.hypot(dx, dy)
            if norm > 0:
                for sign in (-1, 1):
                    handles.append(
                        QPointF(centre.x() + sign * reach * dx / norm, centre.y() + sign * reach * dy / norm)
                    )
        return handles

    def on_line_end(self, pos: QPointF) -> bool:
        """``pos`` is on a rotation handle of a reference line."""
        return any(
            math.dist((pos.x(), pos.y()), (h.x(), h.y())) <= HANDLE_PX for h in self.rotation_handles()
        )

    def _paint_lines(self, painter: QPainter) -> None:
        super()._paint_lines(painter)
        painter.save()
        painter.setClipRect(self.image_rect())
        painter.setBrush(QColor(255, 255, 255))
        for handle in self.rotation_handles():
            painter.drawEllipse(handle, 3.5, 3.5)
        painter.restore()

    def _plane_angle(self, pos: QPointF) -> float:
        """Angle of the mouse around the crosshair in plane mm (clockwise as displayed unflipped)."""
        assert self.plane is not None
        col, row = self.screen_to_pixel(pos.x(), pos.y())
        c_row, c_col = self.plane.from_lps(self.centre_lps)
        sc, sr = self.spacing
        return math.atan2((row - c_row) * sr, (col - c_col) * sc)


class MprView(QWidget):
    """Three linked planes. Public API: ``set_volume``, ``set_crosshair``, ``crosshair_position``,
    ``rotate_crosshair``, ``reset_rotation``, ``set_slab``, ``set_window``, ``window_level``,
    ``views`` (name -> view), ``render_to_array(name)``, ``describe``. ``states`` (name ->
    ViewState) and ``crosshair`` are the models it observes (given by the app, or its own)."""

    crosshair_moved = Signal(object)  # LPS point (np.ndarray)
    window_changed = Signal(float, float)
    slab_changed = Signal(float, str)

    def __init__(
        self,
        parent: QWidget | None = None,
        states: dict[str, ViewState] | None = None,
        crosshair: Crosshair | None = None,
    ) -> None:
        super().__init__(parent)
        self.volume: Any = None
        self.crosshair = crosshair if crosshair is not None else Crosshair()
        states = states or {}
        self.views: dict[str, MprPlaneView] = {
            name: MprPlaneView(name, self, states.get(name)) for name in PLANES
        }
        self._syncing = False
        self._links: list[tuple[Event, Callable[..., None]]] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(PANE_GAP_PX)  # a visible gutter: three panes, not one image
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # a theme cannot hide it
        self.setStyleSheet(f"MprView {{ background: {GUTTER_COLOUR}; }}")
        for name, view in self.views.items():
            layout.addWidget(view)
            view.angle = lambda n=name: self.crosshair.angles[n]
            view.point_picked.connect(self.set_crosshair)
            view.angle_picked.connect(lambda angle, n=name: self.rotate_crosshair(n, angle))
            view.window_changed.connect(self._link_window)
            link = lambda what, n=name: self._on_view_state(n, what)  # noqa: E731
            view.state.changed.connect(link)
            self._links.append((view.state.changed, link))
        for event in (self.crosshair.moved, self.crosshair.rotated):
            event.connect(self._on_crosshair)
            self._links.append((event, self._on_crosshair))

    def detach(self) -> None:
        """Stop observing the models (the widget is going away; they live on in the app)."""
        for event, callback in self._links:
            if callback in event:
                event.disconnect(callback)
        self._links = []
        for view in self.views.values():
            view.detach()

    def _on_crosshair(self, *_args: object) -> None:
        self._update_planes()

    @property
    def slab_mm(self) -> float:
        return self.views["axial"].state.slab_mm

    @property
    def slab_mode(self) -> str:
        return self.views["axial"].state.slab_mode

    # -- public API -----------------------------------------------------------------------
    def set_volume(self, volume: Any, metadata: dict[str, Any] | None = None) -> None:
        """Show ``volume`` with its crosshair at the centre, thin planes and the default window;
        the volume the states already show (a rebuilt viewport) keeps what the reader set."""
        same = all(view.state.source is volume for view in self.views.values())
        self.volume = volume
        merged = {**volume.metadata, **(metadata or {})}
        lo, hi = value_range(volume)
        preset = default_window(merged, (lo, hi))
        unit = modality_unit(merged)
        self._syncing = True
        for name, view in self.views.items():
            view.volume, view.metadata, view.unit = volume, merged, unit
            view.state.default_window = (preset.window, preset.level)
            view.state.wl_step_per_pixel = max(hi - lo, 1.0) / 512.0
            view.state.slice_count = len(plane_positions(volume, name))
            if not same:
                view.state.clear_measurements()
                view.state.slab_mm, view.state.slab_mode = 0.0, "mip"
                view.state.source = volume
                view.state.reset()
        self._syncing = False
        if not same:
            self.crosshair.angles = dict.fromkeys(PLANES, 0.0)
            self.crosshair.point = self._bounds().mean(axis=0)
        self._update_planes()

    def set_crosshair(self, lps: np.ndarray) -> None:
        """Move the crosshair (clamped into the volume); every view reslices through it."""
        lo, hi = self._bounds()
        self.crosshair.move_to(np.clip(np.asarray(lps, dtype=np.float64), lo, hi))

    def crosshair_position(self) -> np.ndarray:
        return self.crosshair.point.copy()

    def rotate_crosshair(self, plane: str, radians: float) -> None:
        """Rotate the other two planes about ``plane``'s normal (oblique MPR)."""
        self.crosshair.rotate(plane, radians)

    def reset_rotation(self) -> None:
        self.crosshair.reset_rotation()

    def set_slab(self, thickness_mm: float, mode: str = "mip") -> None:
        """Thick slab (MIP/MinIP/mean) of ``thickness_mm`` in every view; 0 for thin planes."""
        for view in self.views.values():
            view.state.set_slab(thickness_mm, mode)  # type: ignore[arg-type]
        self._update_planes()
        self.slab_changed.emit(self.slab_mm, mode)

    def set_window(self, width: float, center: float) -> None:
        self.views["axial"].set_window(width, center)

    def window_level(self) -> tuple[float, float]:
        return self.views["axial"].window_level()

    def render_to_array(self, name: str = "axial", overlays: bool = True) -> np.ndarray:
        return self.views[name].render_to_array(overlays)

    def describe(self) -> dict[str, object]:
        return {
            "view": "MPR",
            "crosshair_lps": [round(float(v), 2) for v in self.crosshair.point],
            "rotation_rad": dict(self.crosshair.angles),
            "slab_mm": self.slab_mm,
            "slab_mode": self.slab_mode,
            "planes": {name: view.describe() for name, view in self.views.items()},
        }

    # -- geometry -------------------------------------------------------------------------
    def _bounds(self) -> np.ndarray:
        """(min, max) LPS corners of the volume's bounding box."""
        i, j, k = self.volume.shape_ijk
        corners = np.array(
            [[x, y, z] for x in (0, i - 1) for y in (0, j - 1) for z in (0, k - 1)], dtype=float
        )
        lps = self.volume.index_to_lps(corners)
        return np.stack([lps.min(axis=0), lps.max(axis=0)])

    def plane_axes(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, down, normal) LPS unit vectors of a view after the other views' rotations."""
        rotation = np.eye(3)
        for other in PLANES:
            if other != name and self.crosshair.angles[other]:
                rotation = (
                    rotation_about(np.asarray(STANDARD_PLANES[other][2]), self.crosshair.angles[other])
                    @ rotation
                )
        u, v, _ = (np.asarray(a, dtype=np.float64) for a in STANDARD_PLANES[name])
        u, v = rotation @ u, rotation @ v
        return u, v, np.cross(u, v)

    def _update_planes(self) -> None:
        """Place every plane's state through the crosshair (oblique once rotated); the plane
        views render from their states."""
        if self.volume is None:
            return
        point = self.crosshair.point
        self._syncing = True
        try:
            for name, view in self.views.items():
                u, v, normal = self.plane_axes(name)
                axis = np.asarray(STANDARD_PLANES[name][2])
                aligned = bool(np.allclose((u, v), STANDARD_PLANES[name][:2]))
                state = view.state
                state.geometry = name if aligned else Oblique(tuple(u), tuple(v), tuple(point))
                state.plane = name if aligned else "oblique"
                view.centre_lps = point
                view.lines_lps = []
                for other in PLANES:
                    if other == name:
                        continue
                    direction = np.cross(normal, self.plane_axes(other)[2])
                    if np.linalg.norm(direction) > 1e-6:
                        direction = direction / np.linalg.norm(direction) * 2000.0
                        view.lines_lps.append((point - direction, point + direction, PLANE_COLOURS[other]))
                along = float(point @ axis)
                positions = plane_positions(self.volume, name)
                state.set_position(along if aligned else 0.0, int(np.argmin(np.abs(positions - along))))
        finally:
            self._syncing = False
        self.crosshair_moved.emit(point.copy())

    # -- linking --------------------------------------------------------------------------
    def _on_view_state(self, name: str, what: str) -> None:
        """Scrolling a view moves the crosshair along that view's normal by the scroll steps; a
        measurement picked from the list brings the crosshair to it."""
        if self._syncing or self.volume is None:
            return
        target_m = self.views[name].state.goto_target
        if what == "goto" and target_m is not None and target_m.points_lps:
            self.set_crosshair(np.mean(np.asarray(target_m.points_lps, dtype=np.float64), axis=0))
            return
        if what != "slice":
            return
        axis = np.asarray(STANDARD_PLANES[name][2])
        target = float(plane_positions(self.volume, name)[self.views[name].state.slice_index])
        normal = self.plane_axes(name)[2]
        along = float(self.crosshair.point @ axis)
        step = (target - along) / max(abs(float(normal @ axis)), 1e-6)
        self.set_crosshair(self.crosshair.point + step * normal)

    def _link_window(self, width: float, center: float) -> None:
        if self._syncing:
            return
        self._syncing = True
        for view in self.views.values():
            view.set_window(width, center)
        self._syncing = False
        self.window_changed.emit(width, center)
