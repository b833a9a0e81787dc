"""Headless rendering of one view to PNG through the viewer's own widget.

A snapshot is rendered by ``viewer.qt.slice_view.StackView`` itself, offscreen: the same VTK scene
(image actor, window/level, camera fit) and the same QPainter overlay (orientation letters, corner
texts, scale bar) as the GUI, so the PNG is what the 2D view shows for that series, plane, slice
and window. A QApplication is created when none runs (the ``offscreen`` Qt platform when there is
no display; VTK then renders through EGL). The PNG is written with ``vtkPNGWriter`` to a temporary
file that is fsynced and renamed into place.

    view = render_volume(volume, plane="axial", index=40, window=400, level=40, size=(512, 512))
    view.rgb                      # (H, W, 3) uint8, top row first
    view.screen_xy(row, col)      # where a plane pixel lands on the screen
    snapshot(paths, out_png, plane="axial", index=40, window=400, level=40)

``overlay`` is ``"full"`` (everything the GUI draws, the default), ``"labels"`` (orientation
letters only) or ``"none"`` (image pixels only). Qt widgets do the rendering, so call these from
the thread that runs (or will run) the QApplication, not from a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Our canvases always render offscreen, so they need no X window: EGL gives the same render path
# under Xvfb, a real display and offscreen Qt (an X-backed window once crashed under Xvfb).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import vtk
from vtk.util import numpy_support

from hulu_common.atomic import atomic_output
from viewer.loader import load_series
from viewer.reslice import Plane, PlaneImage, SlabMode
from viewer.volume import Volume

LABEL_COLOUR = (1.0, 220 / 255, 0.0)  # the orientation letters' colour (the 2D view's yellow)
OVERLAYS = ("full", "labels", "none")
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
_APP: Any = None  # the QApplication this module had to create (kept alive)


@dataclass
class RenderedView:
    rgb: np.ndarray  # (H, W, 3) uint8, top row first
    plane: PlaneImage
    window: float
    level: float
    centre_mm: np.ndarray  # image mm (x along columns, y along rows) at the screen centre
    pixels_per_mm: float
    warnings: list[str] = field(default_factory=list)  # the loader's, for the user

    def screen_xy(self, row: float, col: float) -> tuple[float, float]:
        """Screen position (x right, y down, pixels from the top-left corner) of a plane pixel centre."""
        h, w = self.rgb.shape[:2]
        sr, sc = self.plane.pixel_spacing
        x = w / 2 + (col * sc - self.centre_mm[0]) * self.pixels_per_mm
        y = h / 2 + (row * sr - self.centre_mm[1]) * self.pixels_per_mm
        return x, y


def qt_application() -> Any:
    """The running QApplication, or a new one (``offscreen`` platform when there is no display)."""
    global _APP
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = _APP = QApplication(["hulu-workstation-snapshot"])
    return app


def _set_overlay(view: Any, overlay: str) -> None:
    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {OVERLAYS}, not {overlay!r}")
    view.show_overlay = overlay != "none"
    if overlay == "labels":
        view.overlay_parts = {"labels"}


def _grab(view: Any, overlay: str) -> RenderedView:
    """Render a sized, filled view offscreen, then release its VTK window."""
    try:
        rgb = view.render_to_array(overlays=overlay != "none")
        centre, ppmm = view._view_geometry()
        width, level = view.window_level()
        return RenderedView(rgb, view.plane, width, level, np.asarray(centre), float(ppmm))
    finally:
        view.render_window.Finalize()
        view.setParent(None)


def render_plane(
    plane: PlaneImage,
    *,
    window: float,
    level: float,
    size: tuple[int, int] = (512, 512),
    invert: bool = False,
    labels: dict[str, str] | None = None,
    overlay: str = "labels",
) -> RenderedView:
    """Render a plane image alone (no volume) in the 2D view's ``SliceView``; ``labels`` (edge ->
    letters) replace the letters computed from the plane's directions."""
    qt_application()
    from viewer.qt.slice_view import SliceView
    from viewer.view_state import OrientationLabels

    class _PlaneView(SliceView):
        def orientation_labels(self) -> OrientationLabels:
            if labels is None:
                return super().orientation_labels()
            return OrientationLabels(*(labels.get(edge, "") for edge in ("left", "right", "top", "bottom")))

    view = _PlaneView()
    view.resize(*size)
    _set_overlay(view, overlay)
    view.set_plane(plane, ("snapshot",))
    if invert:
        view.state.toggle_invert()
    view.set_window(window, level)
    return _grab(view, overlay)


def projection_labels(patient_orientation: Sequence[str]) -> dict[str, str]:
    """Edge labels of an image without patient geometry from Patient Orientation (row, column)."""
    if len(patient_orientation) != 2:
        return {}
    row, col = (str(x).upper() for x in patient_orientation)

    def flip(s: str) -> str:
        return "".join(_OPPOSITE.get(c, c) for c in s)

    return {"right": row, "left": flip(row), "bottom": col, "top": flip(col)}


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image (top row first) as PNG atomically (temp file, fsync, rename)."""
    path = Path(path)
    h, w = rgb.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(rgb[::-1]).reshape(h * w, 3), deep=True)
    )
    with atomic_output(path) as tmp:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(image)
        writer.Write()
        if writer.GetErrorCode() != 0:
            raise OSError(f"cannot write PNG {path}")
    return path


def choose_volume(volumes: list[Volume], frame: int | None) -> tuple[Volume, int | None]:
    """The volume to show and the frame within it.

    With several volumes of the same geometry (a dynamic series split by repeated positions)
    ``frame`` picks the volume; for a cine (no patient geometry) it picks the frame."""
    first = volumes[0]
    if frame is None or not first.metadata.get("has_patient_geometry", True):
        return first, frame
    same = [
        v
        for v in volumes
        if v.metadata.get("series_uid") == first.metadata.get("series_uid")
        and v.voxels.shape == first.voxels.shape
    ]
    if not 0 <= frame < len(same):
        raise ValueError(f"frame {frame} outside 0..{len(same) - 1}")
    return same[frame], None


def render_volume(
    volume: Volume,
    *,
    plane: Plane | None = None,
    index: int | None = None,
    position_mm: float | None = None,
    window: float | None = None,
    level: float | None = None,
    slab_mm: float = 0.0,
    slab_mode: SlabMode = "mip",
    frame: int | None = None,
    size: tuple[int, int] = (512, 512),
    overlay: str = "full",
) -> RenderedView:
    """Render one view of a loaded volume as the 2D view shows it (defaults: axial, or native
    without patient geometry; the middle slice; the view's opening window)."""
    qt_application()
    from viewer.qt.slice_view import StackView

    geometric = bool(volume.metadata.get("has_patient_geometry", True))
    plane = plane or ("axial" if geometric else "native")
    if frame is not None:
        if geometric:
            raise ValueError(
                "--frame selects a frame of a multi-frame image without 3D geometry or a "
                "repetition of a dynamic series; this series has neither"
            )
        if index is not None:
            raise ValueError("give --frame or --index, not both")
        index = frame
    if plane != "native" and not geometric:
        raise ValueError("this image has no patient geometry: only the native plane can be shown")
    view = StackView()
    try:
        view.resize(*size)
        _set_overlay(view, overlay)
        view.set_volume(volume, plane=plane)
        if slab_mm:
            view.set_slab(slab_mm, slab_mode)
        if index is not None:
            if not 0 <= index < view.state.slice_count:
                raise ValueError(f"index {index} outside 0..{view.state.slice_count - 1}")
            view.set_slice(index)
        elif position_mm is not None:
            view.show_position(position_mm)
        default_width, default_level = view.window_level()
        view.set_window(
            default_width if window is None else window, default_level if level is None else level
        )
    except BaseException:
        view.render_window.Finalize()
        view.setParent(None)
        raise
    return _grab(view, overlay)


def snapshot(paths: Sequence[str | Path], out: str | Path, **options: object) -> RenderedView:
    """Load files, render one view (see :func:`render_volume`) and write it to ``out`` as PNG."""
    result = load_series(paths)
    volume, frame = choose_volume(result.volumes, options.pop("frame", None))  # type: ignore[arg-type]
    view = render_volume(volume, frame=frame, **options)  # type: ignore[arg-type]
    view.warnings = list(result.warnings)
    series = list(dict.fromkeys(str(v.metadata.get("series_uid", "")) for v in result.volumes))
    if len(series) > 1:
        view.warnings.append(
            f"{len(series)} series found; showing series {volume.metadata.get('series_uid')} "
            "(give one series folder or UID to choose)"
        )
    write_png(view.rgb, out)
    return view
