"""Plain-Python view state models (no Qt): what a 2D view shows and how it is transformed.

The Qt widgets in ``viewer.qt`` only observe these models and forward user input to them
(napari-style), so everything here is testable without a window. ``ViewState.describe()`` is the
"what is on screen" record handed to the AI assistant.

Screen convention: x to the right, y downwards, in pixels; "image mm" are offsets from the first
pixel of the displayed plane along its columns (x) and rows (y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from viewer.orientation import direction_label
from viewer.tools import Measurement

_QUARTER_TURN = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 deg clockwise on a y-down screen


class Event:
    """A tiny observer list: ``connect(callback)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def connect(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., None]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: object) -> None:
        for callback in list(self._callbacks):
            callback(*args)


_LETTER_LPS = {
    "L": (1, 0, 0),
    "R": (-1, 0, 0),
    "P": (0, 1, 0),
    "A": (0, -1, 0),
    "H": (0, 0, 1),
    "F": (0, 0, -1),
}


def patient_orientation_axes(values: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """LPS directions of increasing column and row from Patient Orientation (0020,0020).

    Projection images (radiographs, cine) carry e.g. ``["L", "F"]``: columns run to the patient's
    left, rows to the feet. Returns None when the attribute is missing or malformed.
    """
    if len(values) != 2:
        return None
    axes = []
    for value in values:
        letters = str(value).strip().upper()
        if not letters or any(c not in _LETTER_LPS for c in letters):
            return None
        vector = np.sum([_LETTER_LPS[c] for c in letters], axis=0).astype(np.float64)
        axes.append(vector / np.linalg.norm(vector))
    return axes[0], axes[1]


@dataclass(frozen=True)
class OrientationLabels:
    """Letters shown at the middle of each screen edge."""

    left: str
    right: str
    top: str
    bottom: str


class ViewState:
    """Window/level, zoom/pan, flip/rotate/invert and the current slice of one 2D view.

    ``changed`` is emitted with the name of what changed: ``"slice"``, ``"window"``,
    ``"camera"`` (zoom/pan), ``"transform"`` (flip/rotate), ``"invert"``, ``"measurements"``.
    """

    def __init__(self) -> None:
        self.changed = Event()
        self.slice_count = 1
        self.slice_index = 0
        self.window_width = 400.0
        self.window_center = 40.0
        self.default_window = (400.0, 40.0)
        self.wl_step_per_pixel = 1.0  # modality units per mouse pixel when dragging W/L
        self.zoom = 1.0  # relative to "fit the plane in the view"
        self.pan_mm = (0.0, 0.0)  # screen-aligned offset of the view centre from the plane centre
        self._display = np.eye(2)  # image (col, row) offsets -> screen (x, y) offsets
        self.invert = False
        self.plane = "native"
        self.measurements: list[Measurement] = []  # every plane's, each keyed by the plane it is on

    # -- slice ----------------------------------------------------------------------------
    def set_slice_count(self, count: int) -> None:
        self.slice_count = max(int(count), 1)
        self.set_slice(min(self.slice_index, self.slice_count - 1))

    def set_slice(self, index: int) -> None:
        index = int(min(max(int(index), 0), self.slice_count - 1))
        if index != self.slice_index:
            self.slice_index = index
            self.changed.emit("slice")

    def scroll(self, steps: int) -> None:
        self.set_slice(self.slice_index + steps)

    # -- window/level ---------------------------------------------------------------------
    def set_window(self, width: float, center: float) -> None:
        width = max(float(width), 1.0)
        if (width, float(center)) != (self.window_width, self.window_center):
            self.window_width, self.window_center = width, float(center)
            self.changed.emit("window")

    def drag_window(self, dx_pixels: float, dy_pixels: float) -> None:
        """Mouse drag: right widens the window, down raises the level (``wl_step_per_pixel`` each)."""
        self.set_window(
            self.window_width + dx_pixels * self.wl_step_per_pixel,
            self.window_center + dy_pixels * self.wl_step_per_pixel,
        )

    # -- camera ---------------------------------------------------------------------------
    def zoom_by(self, factor: float) -> None:
        self.zoom = float(min(max(self.zoom * factor, 0.05), 50.0))
        self.changed.emit("camera")

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        self.pan_mm = (self.pan_mm[0] + dx_mm, self.pan_mm[1] + dy_mm)
        self.changed.emit("camera")

    # -- transforms -----------------------------------------------------------------------
    # Flips and rotations act on the image as currently displayed, in the order the user gives them.
    def flip_horizontal(self) -> None:
        self._apply(np.diag([-1.0, 1.0]))

    def flip_vertical(self) -> None:
        self._apply(np.diag([1.0, -1.0]))

    def rotate_clockwise(self, degrees: int = 90) -> None:
        if degrees % 90:
            raise ValueError("rotation must be a multiple of 90 degrees")
        self._apply(np.linalg.matrix_power(_QUARTER_TURN, (degrees // 90) % 4))

    def _apply(self, screen_op: np.ndarray) -> None:
        self._display = np.rint(screen_op @ self._display)
        self.changed.emit("transform")

    @property
    def flip_h(self) -> bool:
        """The display is mirrored: equal to a horizontal flip after ``rotation``."""
        return bool(np.linalg.det(self._display) < 0)

    @property
    def rotation(self) -> int:
        """Clockwise rotation in degrees (applied before the horizontal flip when ``flip_h``)."""
        m = np.diag([-1.0, 1.0]) @ self._display if self.flip_h else self._display
        return int(round(np.degrees(np.arctan2(m[1, 0], m[0, 0])))) % 360

    def toggle_invert(self) -> None:
        self.invert = not self.invert
        self.changed.emit("invert")

    def reset(self) -> None:
        """Back to the series' own window, fit zoom, no flip/rotation/inversion."""
        self.zoom, self.pan_mm = 1.0, (0.0, 0.0)
        self.invert = False
        self._display = np.eye(2)
        self.window_width, self.window_center = self.default_window
        for what in ("window", "camera", "transform", "invert"):
            self.changed.emit(what)

    def display_matrix(self) -> np.ndarray:
        """2x2 matrix taking image offsets (columns, rows) to screen offsets (x right, y down)."""
        return self._display.copy()

    def screen_axes_lps(self, col_step: np.ndarray, row_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LPS unit vectors pointing to screen right and screen down, for a plane whose increasing
        column and row indices run along ``col_step`` and ``row_step`` (LPS)."""
        inv = np.linalg.inv(self.display_matrix())
        axes = np.stack([np.asarray(col_step, float), np.asarray(row_step, float)], axis=1)  # 3x2
        return axes @ inv[:, 0], axes @ inv[:, 1]

    def orientation_labels(self, col_step: np.ndarray, row_step: np.ndarray) -> OrientationLabels:
        right, down = self.screen_axes_lps(col_step, row_step)
        return OrientationLabels(
            left=direction_label(-right),
            right=direction_label(right),
            top=direction_label(-down),
            bottom=direction_label(down),
        )

    # -- measurements -----------------------------------------------------------------------
    # Kept for the whole view, whatever plane/slice is shown, so they reappear on their own plane
    # when the user scrolls back; emitted as ``"measurements"``.
    def add_measurement(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        self.changed.emit("measurements")

    def remove_measurement(self, measurement: Measurement) -> None:
        self.measurements.remove(measurement)
        self.changed.emit("measurements")

    def clear_measurements(self) -> None:
        if self.measurements:
            self.measurements.clear()
            self.changed.emit("measurements")

    def measurements_on(self, plane_key: tuple[object, ...]) -> list[Measurement]:
        """The measurements drawn on the plane identified by ``plane_key``."""
        return [m for m in self.measurements if m.plane_key == plane_key]

    def export_measurements(self, unit: str = "") -> list[dict[str, object]]:
        """Every measurement as plain JSON-serialisable data, in the order drawn (``unit``: the
        modality unit of ROI values, e.g. "HU")."""
        return [m.to_dict(unit) for m in self.measurements]

    # -- key bindings (declared on the model, napari-style) --------------------------------
    def key_bindings(self) -> dict[str, Callable[[], None]]:
        return {
            "Up": lambda: self.scroll(-1),
            "Down": lambda: self.scroll(1),
            "PageUp": lambda: self.scroll(-10),
            "PageDown": lambda: self.scroll(10),
            "Home": lambda: self.set_slice(0),
            "End": lambda: self.set_slice(self.slice_count - 1),
            "H": self.flip_horizontal,
            "V": self.flip_vertical,
            "R": self.rotate_clockwise,
            "I": self.toggle_invert,
            "Escape": self.reset,
            "+": lambda: self.zoom_by(1.25),
            "-": lambda: self.zoom_by(0.8),
        }

    def describe(self) -> dict[str, object]:
        """What is on screen, for the app shell and the AI assistant."""
        return {
            "plane": self.plane,
            "slice_index": self.slice_index,
            "slice_count": self.slice_count,
            "window_width": self.window_width,
            "window_center": self.window_center,
            "zoom": self.zoom,
            "flip_h": self.flip_h,
            "rotation": self.rotation,
            "invert": self.invert,
        }


class Crosshair:
    """The linked MPR cursor: an LPS point and the in-plane rotation angles of the oblique planes.

    ``moved`` is emitted with the new LPS point; ``rotated`` when an angle changes.
    Angles are radians about the axis normal to the view they were set in.
    """

    def __init__(self, point: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.moved = Event()
        self.rotated = Event()
        self.point = np.asarray(point, dtype=np.float64)
        self.angles = {"axial": 0.0, "coronal": 0.0, "sagittal": 0.0}

    def move_to(self, lps: np.ndarray) -> None:
        lps = np.asarray(lps, dtype=np.float64)
        if not np.allclose(lps, self.point):
            self.point = lps
            self.moved.emit(self.point.copy())

    def rotate(self, plane: str, radians: float) -> None:
        self.angles[plane] = float(radians)
        self.rotated.emit(plane, float(radians))

    def reset_rotation(self) -> None:
        for plane in self.angles:
            self.rotate(plane, 0.0)
