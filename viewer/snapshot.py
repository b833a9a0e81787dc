"""Headless rendering of one view to PNG, with the same VTK pipeline as the 2D viewer.

The scene is the one ``viewer.qt.slice_view.SliceView`` builds: the plane's modality values on a
``vtkImageActor`` (nearest-neighbour, grey lookup table, window/level on the image property),
a parallel camera looking at the image with rows running down the screen, the image fitted to
the window with its physical aspect ratio, and the orientation letters at the middle of each
edge. It renders offscreen (EGL when there is no DISPLAY) and is written with ``vtkPNGWriter``
to a temporary file that is fsynced and renamed into place.

    result = render_plane(plane_image, window=400, level=40, size=(512, 512))
    result.rgb                    # (H, W, 3) uint8, top row first
    result.screen_xy(row, col)    # where a plane pixel lands on the screen
    snapshot(paths, out_png, plane="axial", index=40, window=400, level=40)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import vtk
from vtk.util import numpy_support

from viewer.loader import load_series
from viewer.presets import default_window
from viewer.reslice import Plane, PlaneImage, SlabMode, plane_image, value_range
from viewer.volume import Volume

LABEL_COLOUR = (1.0, 0.85, 0.2)
LABEL_FONT_PX = 18
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


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


def render_plane(plane: PlaneImage, *, window: float, level: float, size: tuple[int, int] = (512, 512),
                 invert: bool = False, labels: dict[str, str] | None = None) -> RenderedView:
    """Render a plane image offscreen and return the screen pixels."""
    width, height = size
    pixels = np.ascontiguousarray(plane.pixels)
    rows, cols = pixels.shape[:2]
    components = 1 if pixels.ndim == 2 else pixels.shape[2]
    sr, sc = plane.pixel_spacing

    image = vtk.vtkImageData()
    image.SetDimensions(cols, rows, 1)
    image.SetSpacing(sc, sr, 1.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(pixels.reshape(rows * cols, components), deep=True))
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(image)
    actor.GetMapper().BorderOn()  # show whole pixels up to the image edge, as a viewer should
    prop = actor.GetProperty()
    prop.SetInterpolationTypeToNearest()
    if components == 1:
        lut = vtk.vtkLookupTable()
        lut.SetNumberOfTableValues(256)
        lut.Build()
        for i in range(256):
            g = (255 - i if invert else i) / 255.0
            lut.SetTableValue(i, g, g, g, 1.0)
        prop.SetLookupTable(lut)
        prop.UseLookupTableScalarRangeOff()
    prop.SetColorWindow(window)
    prop.SetColorLevel(level)

    renderer = vtk.vtkRenderer()
    renderer.SetBackground(0.0, 0.0, 0.0)
    renderer.AddActor(actor)
    for text_actor in _label_actors(labels if labels is not None else plane.labels):
        renderer.AddViewProp(text_actor)
    extent = np.array([cols * sc, rows * sr])
    ppmm = float(min(width / extent[0], height / extent[1]))
    centre = np.array([(cols - 1) / 2 * sc, (rows - 1) / 2 * sr])
    camera = renderer.GetActiveCamera()
    camera.ParallelProjectionOn()
    camera.SetFocalPoint(centre[0], centre[1], 0.0)
    camera.SetPosition(centre[0], centre[1], -1000.0)
    camera.SetViewUp(0.0, -1.0, 0.0)  # image rows run down the screen
    camera.SetParallelScale(height / 2.0 / ppmm)
    camera.SetClippingRange(1.0, 2000.0)

    window_ = vtk.vtkRenderWindow()
    window_.SetOffScreenRendering(True)
    window_.SetMultiSamples(0)
    window_.SetSize(width, height)
    window_.AddRenderer(renderer)
    window_.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window_)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    out = grab.GetOutput()
    w, h, _ = out.GetDimensions()
    rgb = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()
    window_.Finalize()
    return RenderedView(rgb, plane, window, level, centre, ppmm)


def _label_actors(labels: dict[str, str]) -> list[vtk.vtkTextActor]:
    placements = {  # edge: (x, y normalised viewport, horizontal, vertical justification)
        "left": (0.01, 0.5, "left", "centered"),
        "right": (0.99, 0.5, "right", "centered"),
        "top": (0.5, 0.99, "centered", "top"),
        "bottom": (0.5, 0.01, "centered", "bottom"),
    }
    actors = []
    for edge, text in labels.items():
        if not text or edge not in placements:
            continue
        x, y, hj, vj = placements[edge]
        actor = vtk.vtkTextActor()
        actor.SetInput(text)
        actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        actor.GetPositionCoordinate().SetValue(x, y)
        tp = actor.GetTextProperty()
        tp.SetFontSize(LABEL_FONT_PX)
        tp.BoldOn()
        tp.SetColor(*LABEL_COLOUR)
        getattr(tp, {"left": "SetJustificationToLeft", "right": "SetJustificationToRight",
                     "centered": "SetJustificationToCentered"}[hj])()
        getattr(tp, {"top": "SetVerticalJustificationToTop", "bottom": "SetVerticalJustificationToBottom",
                     "centered": "SetVerticalJustificationToCentered"}[vj])()
        actors.append(actor)
    return actors


def projection_labels(patient_orientation: Sequence[str]) -> dict[str, str]:
    """Edge labels of an image without patient geometry from Patient Orientation (row, column)."""
    if len(patient_orientation) != 2:
        return {}
    row, col = (str(x).upper() for x in patient_orientation)
    flip = (lambda s: "".join(_OPPOSITE.get(c, c) for c in s))
    return {"right": row, "left": flip(row), "bottom": col, "top": flip(col)}


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image (top row first) as PNG atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = rgb.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(rgb[::-1]).reshape(h * w, 3), deep=True))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(tmp)
        writer.SetInputData(image)
        writer.Write()
        if writer.GetErrorCode() != 0:
            raise OSError(f"cannot write PNG {path}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def choose_volume(volumes: list[Volume], frame: int | None) -> tuple[Volume, int | None]:
    """The volume to show and the frame within it.

    With several volumes of the same geometry (a dynamic series split by repeated positions)
    ``frame`` picks the volume; for a cine (no patient geometry) it picks the frame."""
    first = volumes[0]
    if frame is None or not first.metadata.get("has_patient_geometry", True):
        return first, frame
    same = [v for v in volumes if v.metadata.get("series_uid") == first.metadata.get("series_uid")
            and v.voxels.shape == first.voxels.shape]
    if not 0 <= frame < len(same):
        raise ValueError(f"frame {frame} outside 0..{len(same) - 1}")
    return same[frame], None


def render_volume(volume: Volume, *, plane: Plane | None = None, index: int | None = None,
                  position_mm: float | None = None, window: float | None = None, level: float | None = None,
                  slab_mm: float = 0.0, slab_mode: SlabMode = "mip", frame: int | None = None,
                  size: tuple[int, int] = (512, 512)) -> RenderedView:
    """Render one view of a loaded volume (defaults: axial, middle slice, the file's window)."""
    geometric = bool(volume.metadata.get("has_patient_geometry", True))
    plane = plane or ("axial" if geometric else "native")
    if frame is not None:
        if geometric:
            raise ValueError("--frame selects a frame of a multi-frame image without 3D geometry or a "
                             "repetition of a dynamic series; this series has neither")
        if index is not None:
            raise ValueError("give --frame or --index, not both")
        index = frame
    img = plane_image(volume, plane, position_mm, index=index, slab_mm=slab_mm, slab_mode=slab_mode)
    labels = img.labels if geometric else projection_labels(volume.metadata.get("patient_orientation", []))  # type: ignore[arg-type]
    if window is None or level is None:
        if volume.is_color and img.pixels.dtype == np.uint8:
            default_w, default_l = 256.0, 127.5
        else:
            preset = default_window(volume.metadata, value_range(volume))
            default_w, default_l = preset.window, preset.level
        window = default_w if window is None else window
        level = default_l if level is None else level
    return render_plane(img, window=float(window), level=float(level), size=size,
                        invert=bool(volume.metadata.get("invert", False)), labels=labels)


def snapshot(paths: Sequence[str | Path], out: str | Path, **options: object) -> RenderedView:
    """Load files, render one view (see :func:`render_volume`) and write it to ``out`` as PNG."""
    result = load_series(paths)
    volume, frame = choose_volume(result.volumes, options.pop("frame", None))  # type: ignore[arg-type]
    view = render_volume(volume, frame=frame, **options)  # type: ignore[arg-type]
    view.warnings = list(result.warnings)
    series = list(dict.fromkeys(str(v.metadata.get("series_uid", "")) for v in result.volumes))
    if len(series) > 1:
        view.warnings.append(f"{len(series)} series found; showing series {volume.metadata.get('series_uid')} "
                             "(give one series folder or UID to choose)")
    write_png(view.rgb, out)
    return view
