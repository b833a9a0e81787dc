"""Plain-Python view state models (no Qt): what a view shows and how it is transformed.

The Qt widgets in ``viewer.qt`` only observe these models and forward user input to them
(napari-style), so everything here is testable without a window. :func:`displayed_image` is
"what is on screen": the one function the 2D views render from and the AI input is built from.
``VIEW_BINDINGS`` is the one table of a 2D view's keys (the app's key map includes it).

Screen convention: x to the right, y downwards, in pixels; "image mm" are offsets from the first
pixel of the displayed plane along its columns (x) and rows (y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from viewer.orientation import direction_label
from viewer.reslice import Plane, PlaneImage, SlabMode, plane_image, window_to_uint8
from viewer.tools import Measurement
from viewer.volume import Volume

_QUARTER_TURN = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 deg clockwise on a y-down screen


class Event:
    """A tiny observer list: ``connect(callback)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def connect(self, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., None]) -> None:
        self._callbacks.remove(callback)

    def __contains__(self, callback: object) -> bool:
        return callback in self._callbacks

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
    """Everything one 2D view shows: its plane (name, oblique geometry, slice or position), slab,
    window/level, zoom/pan, flip/rotate/invert, interpolation, measurements and the selection.

    ``changed`` is emitted with the name of what changed: ``"slice"``, ``"plane"`` (geometry or
    exact position), ``"slab"``, ``"window"``, ``"camera"`` (zoom/pan), ``"transform"``
    (flip/rotate), ``"invert"``, ``"interpolation"``, ``"measurements"``, ``"selection"``, and
    ``"goto"`` (a measurement asked to be shown: ``goto_target`` holds it).
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
        self.plane = "native"  # name: native, axial, coronal, sagittal or oblique
        self.geometry: Plane = "native"  # what is resliced: the name, or the Oblique plane
        self.position_mm: float | None = None  # exact position along the plane axis (else the slice's)
        self.slab_mm = 0.0
        self.slab_mode: SlabMode = "mip"
        self.interpolation = "nearest"  # how screen pixels are drawn: nearest or linear
        self.measurements: list[Measurement] = []  # every plane's, each keyed by the plane it is on
        self.selected: Measurement | None = None
        self.source: object = None  # the volume shown: measurements and slab belong to it
        self.goto_target: Measurement | None = None

    # -- plane ------------------------------------------------------------------------------
    def set_geometry(self, plane: Plane, slice_count: int, position_mm: float | None = None) -> None:
        """Show ``plane`` (a name or an :class:`Oblique`), ``slice_count`` scroll steps deep, at
        ``position_mm`` (None: at the current slice index)."""
        self.geometry = plane
        self.plane = plane if isinstance(plane, str) else "oblique"
        self.slice_count = max(int(slice_count), 1)
        self.slice_index = min(self.slice_index, self.slice_count - 1)
        self.position_mm = None if position_mm is None else float(position_mm)
        self.changed.emit("plane")

    def set_position(self, position_mm: float, nearest_index: int) -> None:
        """Show the plane at an exact position (crosshair, linked views); the counter shows the
        nearest scroll step."""
        self.position_mm = float(position_mm)
        self.slice_index = int(min(max(nearest_index, 0), self.slice_count - 1))
        self.changed.emit("plane")

    # -- slice ----------------------------------------------------------------------------
    def set_slice_count(self, count: int) -> None:
        self.slice_count = max(int(count), 1)
        self.set_slice(min(self.slice_index, self.slice_count - 1))

    def set_slice(self, index: int) -> None:
        index = int(min(max(int(index), 0), self.slice_count - 1))
        if index != self.slice_index or self.position_mm is not None:
            self.slice_index = index
            self.position_mm = None
            self.changed.emit("slice")

    def scroll(self, steps: int) -> None:
        self.set_slice(self.slice_index + steps)

    # -- slab -------------------------------------------------------------------------------
    def set_slab(self, thickness_mm: float, mode: SlabMode = "mip") -> None:
        """Thick slab (MIP/MinIP/mean) of ``thickness_mm``; 0 for a thin plane."""
        if mode not in SLAB_MODES:
            raise ValueError(f"slab mode must be one of {SLAB_MODES}")
        thickness_mm = max(float(thickness_mm), 0.0)
        if (thickness_mm, mode) != (self.slab_mm, self.slab_mode):
            self.slab_mm, self.slab_mode = thickness_mm, mode
            self.changed.emit("slab")

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

    def set_display_matrix(self, matrix: np.ndarray) -> None:
        """Take another view's orientation (``display_matrix()``: flips and quarter turns)."""
        self._display = np.rint(np.asarray(matrix, dtype=np.float64))
        self.changed.emit("transform")

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

    def toggle_interpolation(self) -> None:
        self.interpolation = "linear" if self.interpolation == "nearest" else "nearest"
        self.changed.emit("interpolation")

    def reset(self) -> None:
        """Back to the series' own window, fit zoom, no flip/rotation/inversion."""
        self.zoom, self.pan_mm = 1.0, (0.0, 0.0)
        self.invert = False
        self._display = np.eye(2)
        self.window_width, self.window_center = self.default_window
        for what in ("window", "camera", "transform", "invert"):
            self.changed.emit(what)

    def escape(self) -> None:
        """Esc: drop the measurement selection, or (nothing selected) reset the view."""
        if self.selected is not None:
            self.select(None)
        else:
            self.reset()

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

    # -- measurements and annotations --------------------------------------------------------
    # Kept for the whole view, whatever plane/slice is shown, so they reappear on their own plane
    # when the user scrolls back; emitted as ``"measurements"``.
    def add_measurement(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        self.changed.emit("measurements")

    def remove_measurement(self, measurement: Measurement) -> None:
        self.measurements.remove(measurement)
        if self.selected is measurement:
            self.selected = None
        self.changed.emit("measurements")

    def replace_measurement(self, old: Measurement, new: Measurement) -> None:
        """A handle was moved: ``new`` takes ``old``'s place (and its selection)."""
        self.measurements[self.measurements.index(old)] = new
        if self.selected is old:
            self.selected = new
        self.changed.emit("measurements")

    def clear_measurements(self) -> None:
        self.selected = None
        if self.measurements:
            self.measurements.clear()
            self.changed.emit("measurements")

    def select(self, measurement: Measurement | None) -> None:
        if measurement is not self.selected:
            self.selected = measurement
            self.changed.emit("selection")

    def delete_selected(self) -> None:
        """Delete/Backspace: remove the selected measurement or annotation."""
        if self.selected is not None:
            self.remove_measurement(self.selected)

    def show_measurement(self, measurement: Measurement) -> None:
        """Go to the plane a measurement is on and select it (the measurement list's click)."""
        self.selected = measurement
        self.goto_target = measurement
        self.changed.emit("goto")
        self.changed.emit("selection")

    def measurements_on(self, plane_key: tuple[object, ...]) -> list[Measurement]:
        """The measurements drawn on the plane identified by ``plane_key``."""
        return [m for m in self.measurements if m.plane_key == plane_key]

    def export_measurements(self, unit: str = "") -> list[dict[str, object]]:
        """Every measurement as plain JSON-serialisable data, in the order drawn (``unit``: the
        modality unit of ROI values, e.g. "HU")."""
        return [m.to_dict(unit) for m in self.measurements]

    # -- key bindings (declared once, in ``VIEW_BINDINGS``) -----------------------------------
    def key_bindings(self) -> dict[str, Callable[[], None]]:
        """Key (QKeySequence text) -> action on this state, from ``VIEW_BINDINGS``."""
        return {key: (lambda fn=b.run: fn(self)) for b in VIEW_BINDINGS for key in b.keys}

    def run(self, action: str) -> bool:
        """Run the ``VIEW_BINDINGS`` action named ``action``; False when there is none."""
        binding = next((b for b in VIEW_BINDINGS if b.action == action), None)
        if binding is None:
            return False
        binding.run(self)
        return True

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
            "slab_mm": self.slab_mm,
            "slab_mode": self.slab_mode,
        }


SLAB_MODES = ("mip", "minip", "mean")


@dataclass(frozen=True)
class ViewBinding:
    """One key binding of a 2D view: ``keys`` are QKeySequence texts, ``run`` acts on a ViewState."""

    action: str
    keys: tuple[str, ...]
    description: str
    group: str
    run: Callable[[ViewState], None]


# The one table of a 2D view's keys (RadiAnt/Horos conventions); the app's key map and its help
# include it, and the views' own key handling reads it.
VIEW_BINDINGS: tuple[ViewBinding, ...] = (
    ViewBinding("next_slice", ("Down",), "Next slice / frame", "Navigation", lambda s: s.scroll(1)),
    ViewBinding("previous_slice", ("Up",), "Previous slice / frame", "Navigation", lambda s: s.scroll(-1)),
    ViewBinding("page_down", ("PgDown",), "10 slices / frames on", "Navigation", lambda s: s.scroll(10)),
    ViewBinding("page_up", ("PgUp",), "10 slices / frames back", "Navigation", lambda s: s.scroll(-10)),
    ViewBinding("first_slice", ("Home",), "First slice", "Navigation", lambda s: s.set_slice(0)),
    ViewBinding("last_slice", ("End",), "Last slice", "Navigation", lambda s: s.set_slice(s.slice_count - 1)),
    ViewBinding("invert", ("I",), "Invert grey scale", "Window/level", lambda s: s.toggle_invert()),
    ViewBinding("zoom_in", ("+", "="), "Zoom in", "View", lambda s: s.zoom_by(1.25)),
    ViewBinding("zoom_out", ("-",), "Zoom out", "View", lambda s: s.zoom_by(0.8)),
    ViewBinding(
        "reset_view",
        ("Esc",),
        "Deselect the measurement, else reset zoom, pan, rotation and window",
        "View",
        lambda s: s.escape(),
    ),
    ViewBinding("flip_h", ("H",), "Flip horizontally", "View", lambda s: s.flip_horizontal()),
    ViewBinding("flip_v", ("V",), "Flip vertically", "View", lambda s: s.flip_vertical()),
    ViewBinding("rotate", ("R",), "Rotate 90 degrees clockwise", "View", lambda s: s.rotate_clockwise()),
    ViewBinding(
        "interpolation",
        ("S",),
        "Smooth (linear) / sharp (nearest) pixels",
        "View",
        lambda s: s.toggle_interpolation(),
    ),
    ViewBinding(
        "delete_measurement",
        ("Del", "Backspace"),
        "Delete the selected measurement or annotation",
        "Measurements",
        lambda s: s.delete_selected(),
    ),
)

# Mouse bindings of a 2D view (documentation of what ``viewer.qt.slice_view`` does), for the help.
MOUSE_BINDINGS: tuple[tuple[str, str], ...] = (
    ("Wheel", "Scroll slices (Ctrl+wheel: zoom)"),
    ("Left drag", "Active tool (W/L by default)"),
    ("Right drag", "Zoom"),
    ("Middle drag", "Pan"),
    ("Ctrl+left click", "Move the MPR crosshair with any tool"),
    ("Drag a crosshair line's end", "Rotate the other MPR planes (oblique)"),
    ("Click a measurement", "Select it; drag a handle to move it"),
    ("Double-click", "Maximise / restore the viewport"),
)


@dataclass(frozen=True)
class DisplayedImage:
    """What one 2D view shows: the plane (values in modality units, geometry, slab), the window
    (width, level; None for colour shown as stored), the inversion and the on-screen orientation
    (``display``: image offsets -> screen offsets, flips and quarter turns)."""

    plane: PlaneImage
    window: tuple[float, float] | None
    invert: bool
    display: np.ndarray

    def grey(self) -> np.ndarray:
        """uint8 pixels as windowed on screen (H, W), or the stored RGB (H, W, 3)."""
        pixels = self.plane.pixels
        if self.window is None:
            return pixels if pixels.dtype == np.uint8 else np.clip(pixels, 0, 255).astype(np.uint8)
        return window_to_uint8(pixels, self.window[0], self.window[1], invert=self.invert)

    def on_screen(self) -> np.ndarray:
        """:meth:`grey` turned and flipped as the view displays it (zoom and pan aside)."""
        return orient_as_displayed(self.grey(), self.display)


def orient_as_displayed(image: np.ndarray, display: np.ndarray) -> np.ndarray:
    """``image`` [row, col, ...] rearranged to [screen y, screen x, ...] by a flip/quarter-turn
    ``display`` matrix (image col/row offsets -> screen x/y offsets)."""
    (a, b), (c, d) = np.rint(display).astype(int)
    if b == 0:  # screen x follows columns, y follows rows
        out = image[:: 1 if d > 0 else -1, :: 1 if a > 0 else -1]
    else:  # a quarter turn: screen x follows rows, y follows columns
        out = np.swapaxes(image, 0, 1)[:: 1 if c > 0 else -1, :: 1 if b > 0 else -1]
    return np.ascontiguousarray(out)


def displayed_image(volume: Volume, state: ViewState) -> DisplayedImage:
    """What a 2D view with ``state`` shows of ``volume``: the one "what is on screen" function
    (the views render from it, the AI input is built from it)."""
    where = {"index": state.slice_index} if state.position_mm is None else {"position_mm": state.position_mm}
    plane = plane_image(volume, state.geometry, slab_mm=state.slab_mm, slab_mode=state.slab_mode, **where)
    window = None if volume.is_color else (state.window_width, state.window_center)
    return DisplayedImage(plane, window, state.invert, state.display_matrix())


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


VOLUME_PRESETS = ("CT bone", "CT soft tissue", "MIP")  # 3D rendering presets (viewer.qt.volume_view)


class VolumeState:
    """What a 3D rendering shows: its rendering preset, one of ``presets``. ``changed`` is
    emitted with ``"preset"``."""

    def __init__(self, presets: tuple[str, ...] = ()) -> None:
        self.changed = Event()
        self.presets = tuple(presets)
        self.preset = presets[0] if presets else ""
        self.source: object = None  # the volume shown

    def set_preset(self, name: str) -> None:
        if name not in self.presets:
            raise KeyError(f"unknown volume preset {name!r}; one of {list(self.presets)}")
        if name != self.preset:
            self.preset = name
            self.changed.emit("preset")
