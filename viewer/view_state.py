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

ROTATIONS = (0, 90, 180, 270)


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
    ``"camera"`` (zoom/pan), ``"transform"`` (flip/rotate), ``"invert"``.
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
        self.flip_h = False
        self.flip_v = False
        self.rotation = 0  # degrees clockwise, one of ROTATIONS
        self.invert = False
        self.plane = "native"

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
        self.set_window(self.window_width + dx_pixels * self.wl_step_per_pixel,
                        self.window_center + dy_pixels * self.wl_step_per_pixel)

    def window_bounds(self) -> tuple[float, float]:
        return self.window_center - self.window_width / 2, self.window_center + self.window_width / 2

    # -- camera ---------------------------------------------------------------------------
    def zoom_by(self, factor: float) -> None:
        self.zoom = float(min(max(self.zoom * factor, 0.05), 50.0))
        self.changed.emit("camera")

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        self.pan_mm = (self.pan_mm[0] + dx_mm, self.pan_mm[1] + dy_mm)
        self.changed.emit("camera")

    # -- transforms -----------------------------------------------------------------------
    def flip_horizontal(self) -> None:
        self.flip_h = not self.flip_h
        self.changed.emit("transform")

    def flip_vertical(self) -> None:
        self.flip_v = not self.flip_v
        self.changed.emit("transform")

    def rotate_clockwise(self, degrees: int = 90) -> None:
        if degrees % 90:
            raise ValueError("rotation must be a multiple of 90 degrees")
        self.rotation = (self.rotation + degrees) % 360
        self.changed.emit("transform")

    def toggle_invert(self) -> None:
        self.invert = not self.invert
        self.changed.emit("invert")

    def reset(self) -> None:
        """Back to the series' own window, fit zoom, no flip/rotation/inversion."""
        self.zoom, self.pan_mm = 1.0, (0.0, 0.0)
        self.flip_h = self.flip_v = self.invert = False
        self.rotation = 0
        self.window_width, self.window_center = self.default_window
        for what in ("window", "camera", "transform", "invert"):
            self.changed.emit(what)

    def display_matrix(self) -> np.ndarray:
        """2x2 matrix taking image offsets (columns, rows) to screen offsets (x right, y down).

        The image is first rotated clockwise by ``rotation``, then flipped on the screen.
        """
        quarter = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 deg clockwise with y pointing down
        m = np.linalg.matrix_power(quarter, self.rotation // 90)
        flip = np.diag([-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0])
        return flip @ m

    def screen_axes_lps(self, column_dir: np.ndarray, row_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LPS unit vectors pointing to screen right and screen down for a plane with these axes."""
        inv = np.linalg.inv(self.display_matrix())
        axes = np.stack([np.asarray(column_dir, float), np.asarray(row_dir, float)], axis=1)  # 3x2
        return axes @ inv[:, 0], axes @ inv[:, 1]

    def orientation_labels(self, column_dir: np.ndarray, row_dir: np.ndarray) -> OrientationLabels:
        right, down = self.screen_axes_lps(column_dir, row_dir)
        return OrientationLabels(left=direction_label(-right), right=direction_label(right),
                                 top=direction_label(-down), bottom=direction_label(down))

    # -- key bindings (declared on the model, napari-style) --------------------------------
    def key_bindings(self) -> dict[str, Callable[[], None]]:
        return {
            "Up": lambda: self.scroll(-1), "Down": lambda: self.scroll(1),
            "PageUp": lambda: self.scroll(-10), "PageDown": lambda: self.scroll(10),
            "Home": lambda: self.set_slice(0), "End": lambda: self.set_slice(self.slice_count - 1),
            "H": self.flip_horizontal, "V": self.flip_vertical, "R": self.rotate_clockwise,
            "I": self.toggle_invert, "Escape": self.reset,
            "+": lambda: self.zoom_by(1.25), "-": lambda: self.zoom_by(0.8),
        }

    def describe(self) -> dict[str, object]:
        """What is on screen, for the app shell and the AI assistant."""
        return {
            "plane": self.plane, "slice_index": self.slice_index, "slice_count": self.slice_count,
            "window_width": self.window_width, "window_center": self.window_center,
            "zoom": self.zoom, "flip_h": self.flip_h, "flip_v": self.flip_v,
            "rotation": self.rotation, "invert": self.invert,
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


@dataclass
class DisplayPlane:
    """A 2D image in patient space, as a view displays it.

    ``pixels[row, col]`` in modality units; pixel (0, 0) is centred at ``origin`` (LPS mm);
    ``column_dir``/``row_dir`` are the LPS unit vectors of increasing column/row index;
    ``spacing`` is (column spacing, row spacing) in mm; ``thickness`` is the slab or slice
    thickness in mm.
    """

    pixels: np.ndarray
    origin: np.ndarray
    column_dir: np.ndarray
    row_dir: np.ndarray
    spacing: tuple[float, float]
    thickness: float = 0.0

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.column_dir, self.row_dir)

    def pixel_to_lps(self, col: float, row: float) -> np.ndarray:
        return (np.asarray(self.origin, float) + col * self.spacing[0] * np.asarray(self.column_dir, float)
                + row * self.spacing[1] * np.asarray(self.row_dir, float))

    def lps_to_pixel(self, lps: np.ndarray) -> tuple[float, float]:
        d = np.asarray(lps, float) - np.asarray(self.origin, float)
        return (float(d @ self.column_dir) / self.spacing[0], float(d @ self.row_dir) / self.spacing[1])


def native_plane(volume: object, k: int, thickness: float | None = None) -> DisplayPlane:
    """Slice ``k`` of a volume as acquired (rows and columns as stored, the usual stack display)."""
    direction = np.asarray(volume.direction, dtype=np.float64)  # type: ignore[attr-defined]
    spacing = volume.spacing  # type: ignore[attr-defined]
    return DisplayPlane(
        pixels=volume.voxels[k],  # type: ignore[attr-defined]
        origin=volume.index_to_lps(np.array([0.0, 0.0, float(k)])),  # type: ignore[attr-defined]
        column_dir=direction[:, 0], row_dir=direction[:, 1],
        spacing=(float(spacing[0]), float(spacing[1])),
        thickness=float(thickness if thickness is not None else spacing[2]),
    )
