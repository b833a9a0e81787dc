"""Planes through a volume: axial / coronal / sagittal / oblique, thick slabs, window/level.

Radiological display convention (what every view and snapshot shows):

* axial: patient's LEFT on the image's RIGHT, anterior UP (viewed from the feet);
* coronal: patient's LEFT on the image's RIGHT, head UP (viewed from the front);
* sagittal: anterior on the LEFT, head UP (viewed from the patient's left).

API::

    img = plane_image(volume, "axial", position_mm)             # or index=N, or Oblique(...)
    img = plane_image(volume, "coronal", index=40, slab_mm=10, slab_mode="mip")
    img.pixels            # 2D modality values (3D for colour), [row, col]
    img.pixel_spacing     # (between rows, between columns) mm
    img.origin, img.row_dir, img.col_dir   # LPS of pixel [0, 0]; unit vectors of +col and +row
    img.to_lps(row, col) / img.from_lps(point)
    img.labels            # {"left", "right", "top", "bottom"} -> "R"/"L"/"A"/"P"/"H"/"F" (oblique: "LA" ...)
    plane_positions(volume, "axial")   # positions (mm) of each scroll step; index N -> positions[N]
    plane_point(volume, "axial", index=N)   # (LPS point on that plane, its normal), no pixels
    window_to_uint8(values, window, level, invert=False)

*position* for a standard plane is the LPS coordinate along its axis (axial: z, + = head;
coronal: y, + = posterior; sagittal: x, + = left); for an :class:`Oblique` plane it is the
signed distance from its centre along ``row_dir x col_dir``. Positions, and so *index* N, always
increase along the plane's axis whatever the acquisition: index 0 is the most inferior axial,
most anterior coronal and rightmost sagittal plane (a feet-first or prone series scrolls the same
way as a head-first supine one); for an aligned plane the steps are the volume's voxel planes.

When the volume's axes line up with the plane (the usual case) a plane is an exact copy of
voxels (transposed/flipped), so values (HU) are exact; otherwise it is sampled trilinearly.
The ``"native"`` plane is the acquisition plane as stored (rows and columns of the files); it is
the only plane for images without patient geometry (ultrasound cine, radiographs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from viewer.orientation import edge_labels
from viewer.volume import Volume

SlabMode = Literal["mip", "minip", "mean"]

# (image right, image down, axis along which position is measured), LPS.
STANDARD_PLANES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
}
_ALIGN = 1.0 - 1e-6


@dataclass(frozen=True)
class Oblique:
    """An arbitrary plane: ``row_dir`` points to the image's right, ``col_dir`` down (LPS unit
    vectors, made orthonormal); ``center`` is the LPS point at position 0 (default: volume centre)."""

    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    center: tuple[float, float, float] | None = None


Plane = str | Oblique


@dataclass
class PlaneImage:
    pixels: np.ndarray
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    origin: np.ndarray  # LPS centre of pixel [0, 0]
    row_dir: np.ndarray  # LPS unit vector of increasing column (image right)
    col_dir: np.ndarray  # LPS unit vector of increasing row (image down)
    position_mm: float
    labels: dict[str, str] = field(default_factory=dict)
    slab_mm: float = 0.0
    slab_mode: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]

    def to_lps(self, row: float, col: float) -> np.ndarray:
        return (
            self.origin
            + col * self.pixel_spacing[1] * self.row_dir
            + row * self.pixel_spacing[0] * self.col_dir
        )

    def from_lps(self, point: np.ndarray) -> tuple[float, float]:
        """(row, col) of an LPS point projected onto the plane."""
        rel = np.asarray(point, dtype=np.float64) - self.origin
        return float(rel @ self.col_dir / self.pixel_spacing[0]), float(
            rel @ self.row_dir / self.pixel_spacing[1]
        )


@dataclass(frozen=True)
class _Frame:
    """Plane axes in LPS: u right, v down, axis for the position, point at position 0."""

    u: np.ndarray
    v: np.ndarray
    axis: np.ndarray
    anchor: np.ndarray


def _plane_frame(volume: Volume, plane: Plane) -> _Frame:
    if isinstance(plane, Oblique):
        u = np.asarray(plane.row_dir, dtype=np.float64)
        u = u / np.linalg.norm(u)
        v = np.asarray(plane.col_dir, dtype=np.float64)
        v = v - (v @ u) * u
        if np.linalg.norm(v) < 1e-6:
            raise ValueError("oblique plane: row_dir and col_dir are parallel")
        v = v / np.linalg.norm(v)
        centre = np.asarray(
            plane.center if plane.center is not None else volume_centre(volume), dtype=np.float64
        )
        return _Frame(u, v, np.cross(u, v), centre)
    if plane == "native":
        d = np.asarray(volume.direction, dtype=np.float64)
        return _Frame(d[:, 0], d[:, 1], d[:, 2], np.asarray(volume.origin, dtype=np.float64))
    try:
        u, v, axis = (np.asarray(x) for x in STANDARD_PLANES[plane])
    except KeyError:
        raise ValueError(
            f"unknown plane {plane!r}: use axial, coronal, sagittal, native or Oblique"
        ) from None
    return _Frame(u, v, axis, np.zeros(3))


def volume_centre(volume: Volume) -> np.ndarray:
    i, j, k = volume.shape_ijk
    return volume.index_to_lps(np.array([(i - 1) / 2, (j - 1) / 2, (k - 1) / 2]))


def _axis_map(
    volume: Volume, frame: _Frame
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(volume axis, sign) for u, v and the plane axis when all three line up with volume axes."""
    d = np.asarray(volume.direction, dtype=np.float64)
    out = []
    for vec in (frame.u, frame.v, frame.axis):
        dots = d.T @ vec
        a = int(np.argmax(np.abs(dots)))
        if abs(dots[a]) < _ALIGN:
            return None
        out.append((a, 1 if dots[a] > 0 else -1))
    if len({a for a, _ in out}) != 3:
        return None
    return out[0], out[1], out[2]


def value_range(volume: Volume) -> tuple[float, float]:
    """(min, max) of the voxels, computed once and cached in the metadata."""
    cached = volume.metadata.get("value_range")
    if cached is None:
        cached = (float(volume.voxels.min()), float(volume.voxels.max()))
        volume.metadata["value_range"] = cached
    return cached  # type: ignore[return-value]


def _normal_spacing(volume: Volume, frame: _Frame) -> float:
    """Scroll step along the plane axis: spacing of the volume axis closest to it."""
    d = np.asarray(volume.direction, dtype=np.float64)
    a = int(np.argmax(np.abs(d.T @ frame.axis)))
    return float(volume.spacing[a])


def plane_positions(volume: Volume, plane: Plane) -> np.ndarray:
    """Position (mm) of every scroll step of a plane through the volume; index N -> [N]."""
    frame = _plane_frame(volume, plane)
    amap = _axis_map(volume, frame)
    if amap is not None:
        a, sign = amap[2]
        n = volume.shape_ijk[a]
        idx = np.zeros((n, 3))
        idx[:, a] = np.arange(n) if sign > 0 else np.arange(n)[::-1]
        return (volume.index_to_lps(idx) - frame.anchor) @ frame.axis
    lo, hi = _extent(volume, frame, frame.axis)
    step = _normal_spacing(volume, frame)
    return np.arange(lo, hi + step * 1e-6, step)


def stack_step_count(volume: Volume, plane: Plane) -> int:
    """How many scroll steps a stack of ``plane`` has (``"native"``: the volume's own slices)."""
    return volume.voxels.shape[0] if plane == "native" else len(plane_positions(volume, plane))


def plane_point(
    volume: Volume, plane: Plane, position_mm: float | None = None, *, index: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(an LPS point on the plane, its unit normal) of the plane at ``position_mm`` or scroll step
    ``index`` (as :func:`plane_image`, without computing pixels)."""
    frame = _plane_frame(volume, plane)
    position_mm = _resolve_position(volume, plane, frame, position_mm, index)
    return frame.anchor + position_mm * frame.axis, frame.axis.copy()


def _resolve_position(
    volume: Volume, plane: Plane, frame: _Frame, position_mm: float | None, index: int | None
) -> float:
    """The plane's position in mm along its axis: scroll step ``index``, else ``position_mm``, else
    the volume's centre."""
    if index is not None:
        positions = plane_positions(volume, plane)
        if not 0 <= index < len(positions):
            raise ValueError(f"index {index} outside 0..{len(positions) - 1}")
        return float(positions[index])
    if position_mm is None:
        return float((volume_centre(volume) - frame.anchor) @ frame.axis)
    return float(position_mm)


def _corners(volume: Volume) -> np.ndarray:
    i, j, k = volume.shape_ijk
    c = np.array([[x, y, z] for x in (0, i - 1) for y in (0, j - 1) for z in (0, k - 1)], dtype=np.float64)
    return volume.index_to_lps(c)


def _extent(volume: Volume, frame: _Frame, vec: np.ndarray) -> tuple[float, float]:
    p = (_corners(volume) - frame.anchor) @ vec
    return float(p.min()), float(p.max())


def plane_image(
    volume: Volume,
    plane: Plane = "axial",
    position_mm: float | None = None,
    *,
    index: int | None = None,
    slab_mm: float = 0.0,
    slab_mode: SlabMode = "mip",
) -> PlaneImage:
    """The image of one plane through ``volume`` (see the module docstring)."""
    if slab_mode not in ("mip", "minip", "mean"):
        raise ValueError(f"unknown slab mode {slab_mode!r}: use mip, minip or mean")
    if plane != "native" and not volume.metadata.get("has_patient_geometry", True):
        raise ValueError("this image has no patient geometry: only the native plane can be shown")
    frame = _plane_frame(volume, plane)
    position_mm = _resolve_position(volume, plane, frame, position_mm, index)
    amap = _axis_map(volume, frame)
    if amap is not None:
        img = _aligned_plane(volume, frame, amap, position_mm, slab_mm, slab_mode)
    elif volume.is_color:
        raise ValueError("colour images can only be shown in their native plane")
    else:
        img = _sampled_plane(volume, frame, position_mm, slab_mm, slab_mode)
    img.labels = edge_labels(img.row_dir, img.col_dir)
    return img


def _aligned_plane(
    volume: Volume, frame: _Frame, amap: tuple, position: float, slab_mm: float, slab_mode: str
) -> PlaneImage:
    (au, su), (av, sv), (an, sn) = amap
    shape_ijk = volume.shape_ijk
    sp_n = float(volume.spacing[an])
    # continuous index t along the volume axis that carries the plane axis (voxel 0 at ``base``)
    base = float((volume.index_to_lps(np.zeros(3)) - frame.anchor) @ frame.axis)
    t = (position - base) / (sp_n * sn)
    n = shape_ijk[an]
    if t < -1e-3 or t > n - 1 + 1e-3:
        raise ValueError(f"position {position:.2f} mm is outside the volume")
    t = float(np.clip(t, 0, n - 1))
    data_axis = 2 - an  # voxels are [k, j, i]
    if slab_mm > 0:
        half = slab_mm / 2.0 / sp_n
        lo, hi = int(np.ceil(t - half - 1e-6)), int(np.floor(t + half + 1e-6))
        lo, hi = max(lo, 0), min(hi, n - 1)
        block = np.take(volume.voxels, np.arange(lo, hi + 1), axis=data_axis)
        plane2d = _reduce(block, data_axis, slab_mode)
    else:
        f = int(np.floor(t))
        w = t - f
        if w < 1e-3 or f + 1 >= n:
            plane2d = np.take(volume.voxels, min(f + (w > 0.5), n - 1), axis=data_axis)
        elif w > 1 - 1e-3:
            plane2d = np.take(volume.voxels, f + 1, axis=data_axis)
        else:
            a = np.take(volume.voxels, f, axis=data_axis).astype(np.float32)
            b = np.take(volume.voxels, f + 1, axis=data_axis).astype(np.float32)
            plane2d = (1 - w) * a + w * b
    # the two data axes left, in order, and the volume axes (i=0, j=1, k=2) they carry
    vol_axes = [2 - d for d in range(3) if d != data_axis]
    if vol_axes != [av, au]:  # need rows = v axis, cols = u axis
        plane2d = np.swapaxes(plane2d, 0, 1)
    if sv < 0:
        plane2d = plane2d[::-1]
    if su < 0:
        plane2d = plane2d[:, ::-1]
    start = np.zeros(3)
    start[an] = t
    start[au] = 0 if su > 0 else shape_ijk[au] - 1
    start[av] = 0 if sv > 0 else shape_ijk[av] - 1
    origin = volume.index_to_lps(start)
    d = np.asarray(volume.direction, dtype=np.float64)
    return PlaneImage(
        np.ascontiguousarray(plane2d),
        (float(volume.spacing[av]), float(volume.spacing[au])),
        origin,
        d[:, au] * su,
        d[:, av] * sv,
        position,
        slab_mm=slab_mm,
        slab_mode=slab_mode if slab_mm > 0 else "",
    )


def _reduce(block: np.ndarray, axis: int, mode: str) -> np.ndarray:
    if mode == "mip":
        return block.max(axis=axis)
    if mode == "minip":
        return block.min(axis=axis)
    return block.mean(axis=axis, dtype=np.float32)


def _sampled_plane(
    volume: Volume, frame: _Frame, position: float, slab_mm: float, slab_mode: str
) -> PlaneImage:
    spacing = float(min(volume.spacing))
    ulo, uhi = _extent(volume, frame, frame.u)
    vlo, vhi = _extent(volume, frame, frame.v)
    cols = int(np.floor((uhi - ulo) / spacing + 1e-6)) + 1
    rows = int(np.floor((vhi - vlo) / spacing + 1e-6)) + 1
    # u and v are orthogonal to the plane axis, so this point lies on the plane at ``position``
    origin = frame.anchor + position * frame.axis + ulo * frame.u + vlo * frame.v
    fill = value_range(volume)[0]
    step = _normal_spacing(volume, frame)
    offsets = [0.0]
    if slab_mm > 0:
        m = int(np.floor(slab_mm / 2.0 / step + 1e-6))
        offsets = [s * step for s in range(-m, m + 1)]
    values = _vtk_reslice(volume, origin, frame, spacing, (rows, cols), step, len(offsets), slab_mode, fill)
    return PlaneImage(
        values,
        (spacing, spacing),
        origin,
        frame.u,
        frame.v,
        position,
        slab_mm=slab_mm,
        slab_mode=slab_mode if slab_mm > 0 else "",
    )


_VTK_SLAB_MODES = {"mip": "SetSlabModeToMax", "minip": "SetSlabModeToMin", "mean": "SetSlabModeToMean"}


def _vtk_reslice(
    volume: Volume,
    origin: np.ndarray,
    frame: _Frame,
    spacing: float,
    shape: tuple[int, int],
    step: float,
    slab_slices: int,
    slab_mode: str,
    fill: float,
) -> np.ndarray:
    """Trilinear samples (float32) of a plane grid, ``slab_slices`` planes ``step`` mm apart along the
    plane axis combined by ``slab_mode``; ``fill`` outside the volume.

    vtkImageReslice (C++, multithreaded) works in voxel-index space here: the input keeps unit
    spacing and no direction, and the reslice axes are the affine from output pixel to voxel index,
    so the Volume's direction matrix and spacing are honoured exactly and no voxel is copied."""
    # only the VTK modules needed, and only when a plane needs sampling
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_FLOAT
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkImagingCore import vtkImageReslice

    vox = np.ascontiguousarray(volume.voxels)
    nk, nj, ni = vox.shape
    image = vtkImageData()
    image.SetDimensions(ni, nj, nk)
    flat = vox.reshape(-1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=False))
    to_index = np.linalg.inv(np.asarray(volume.direction, dtype=np.float64) * np.asarray(volume.spacing))
    columns = [
        to_index @ (spacing * frame.u),
        to_index @ (spacing * frame.v),
        to_index @ (step * frame.axis),
        to_index @ (origin - np.asarray(volume.origin, dtype=np.float64)),
    ]
    axes = vtkMatrix4x4()
    for c, vec in enumerate(columns):
        for r in range(3):
            axes.SetElement(r, c, float(vec[r]))
        axes.SetElement(3, c, 1.0 if c == 3 else 0.0)
    reslice = vtkImageReslice()
    reslice.SetInputData(image)
    reslice.SetResliceAxes(axes)
    reslice.SetInterpolationModeToLinear()
    reslice.SetOutputScalarType(VTK_FLOAT)
    reslice.SetBackgroundLevel(float(fill))
    reslice.SetOutputSpacing(1.0, 1.0, 1.0)
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.SetOutputExtent(0, shape[1] - 1, 0, shape[0] - 1, 0, 0)
    if slab_slices > 1:
        reslice.SetSlabNumberOfSlices(slab_slices)
        getattr(reslice, _VTK_SLAB_MODES[slab_mode])()
    reslice.Update()
    out = numpy_support.vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars())
    return out.reshape(shape).copy()


def window_to_uint8(values: np.ndarray, window: float, level: float, *, invert: bool = False) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2) to 0..255; ``invert`` for MONOCHROME1."""
    width = max(float(window), 1.0)
    lo = float(level) - 0.5 - (width - 1) / 2
    scaled = (np.asarray(values, dtype=np.float32) - lo) * (255.0 / (width - 1) if width > 1 else 255.0)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - out if invert else out
