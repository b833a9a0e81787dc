"""Linked axial/coronal/sagittal views around one crosshair, with oblique planes and thick slabs.

Clicking or dragging in a view (crosshair tool) moves the shared ``Crosshair``; the other views
reslice through the new point. Shift+drag rotates the other two planes about the view's normal
(oblique MPR). Each view draws the other planes' intersection lines (reference lines) through
the crosshair. Window/level is linked across the three views.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtWidgets import QHBoxLayout, QWidget

from viewer.presets import default_window
from viewer.qt.slice_view import SliceView, modality_unit
from viewer.reslice import STANDARD_PLANES, Oblique, plane_image, plane_positions, value_range
from viewer.view_state import Crosshair

PLANES = ("axial", "coronal", "sagittal")
PLANE_COLOURS = {
    "axial": QColor(80, 160, 255),
    "coronal": QColor(80, 220, 80),
    "sagittal": QColor(255, 90, 90),
}
SLAB_MODES = ("mip", "minip", "mean")


def rotation_about(axis: np.ndarray, radians: float) -> np.ndarray:
    """Right-handed rotation matrix about a unit axis (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(radians) * k + (1 - math.cos(radians)) * (k @ k)


class MprPlaneView(SliceView):
    """A SliceView whose crosshair tool also rotates (Shift+drag) the other planes."""

    angle_picked = Signal(float)  # radians, in-plane angle of the mouse around the crosshair

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.state.plane = name
        self.tool = "crosshair"
        self.centre_lps = np.zeros(3)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if (
            self.tool == "crosshair"
            and self._button == Qt.MouseButton.LeftButton
            and self.plane is not None
            and event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self._last = event.position()
            self.angle_picked.emit(self._plane_angle(event.position()))
            return
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and self.tool == "crosshair":
            self._press = self._last = event.position()
            self._button = event.button()
            return
        super().mousePressEvent(event)

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
    ``views`` (name -> view), ``render_to_array(name)``, ``describe``."""

    crosshair_moved = Signal(object)  # LPS point (np.ndarray)
    window_changed = Signal(float, float)
    slab_changed = Signal(float, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.volume: Any = None
        self.crosshair = Crosshair()
        self.slab_mm = 0.0
        self.slab_mode = "mip"
        self.views: dict[str, MprPlaneView] = {name: MprPlaneView(name, self) for name in PLANES}
        self._syncing = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for name, view in self.views.items():
            layout.addWidget(view)
            view.point_picked.connect(self.set_crosshair)
            view.angle_picked.connect(lambda angle, n=name: self.rotate_crosshair(n, angle))
            view.window_changed.connect(self._link_window)
            view.state.changed.connect(lambda what, n=name: self._on_view_state(n, what))
        self.crosshair.moved.connect(lambda _point: self._update_planes())
        self.crosshair.rotated.connect(lambda _plane, _angle: self._update_planes())

    # -- public API -----------------------------------------------------------------------
    def set_volume(self, volume: Any, metadata: dict[str, Any] | None = None) -> None:
        self.volume = volume
        merged = {**volume.metadata, **(metadata or {})}
        lo, hi = value_range(volume)
        preset = default_window(merged, (lo, hi))
        unit = modality_unit(merged)
        self._syncing = True
        for name, view in self.views.items():
            view.metadata, view.unit = merged, unit
            view.state.default_window = (preset.window, preset.level)
            view.state.wl_step_per_pixel = max(hi - lo, 1.0) / 512.0
            view.state.slice_count = len(plane_positions(volume, name))
            view.state.reset()
        self._syncing = False
        corners = self._bounds()
        self.crosshair.angles = dict.fromkeys(PLANES, 0.0)
        self.crosshair.point = corners.mean(axis=0)
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
        if mode not in SLAB_MODES:
            raise ValueError(f"slab mode must be one of {SLAB_MODES}")
        self.slab_mm, self.slab_mode = max(float(thickness_mm), 0.0), mode
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

    def _plane(self, name: str):
        point = self.crosshair.point
        kwargs = {"slab_mm": self.slab_mm, "slab_mode": self.slab_mode}
        u, v, normal = self.plane_axes(name)
        if np.allclose((u, v), STANDARD_PLANES[name][:2]):
            return plane_image(
                self.volume, name, float(point @ np.asarray(STANDARD_PLANES[name][2])), **kwargs
            )
        return plane_image(self.volume, Oblique(tuple(u), tuple(v), tuple(point)), 0.0, **kwargs)

    def _update_planes(self) -> None:
        if self.volume is None:
            return
        point = self.crosshair.point
        for name, view in self.views.items():
            plane = self._plane(name)
            view.centre_lps = point
            key = (
                name,
                round(plane.position_mm, 3),
                tuple(np.round(np.cross(plane.row_dir, plane.col_dir), 4)),
            )
            view.set_plane(plane, key)
            view.lines_lps = []
            normal = np.cross(plane.row_dir, plane.col_dir)
            for other in PLANES:
                if other == name:
                    continue
                direction = np.cross(normal, self.plane_axes(other)[2])
                if np.linalg.norm(direction) > 1e-6:
                    direction = direction / np.linalg.norm(direction) * 2000.0
                    view.lines_lps.append((point - direction, point + direction, PLANE_COLOURS[other]))
            self._syncing = True
            positions = plane_positions(self.volume, name)
            view.state.set_slice(
                int(np.argmin(np.abs(positions - point @ np.asarray(STANDARD_PLANES[name][2]))))
            )
            self._syncing = False
        self.crosshair_moved.emit(point.copy())

    # -- linking --------------------------------------------------------------------------
    def _on_view_state(self, name: str, what: str) -> None:
        """Scrolling a view moves the crosshair along that view's normal by the scroll steps."""
        if what != "slice" or self._syncing or self.volume is None:
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
