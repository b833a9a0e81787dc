"""Acquisition-geometry checks and correction: gantry tilt and irregular slice spacing.

A stack of parallel slices is a regular volume only when the slice origins lie on one line along
the slice normal, equally spaced. Two common violations:

* **gantry tilt**: the origins step along a line that is *not* the normal (the slices are
  sheared); shown as if they were stacked along the normal, anatomy is distorted;
* **irregular spacing**: missing slices, overlapping reconstructions or variable-pitch series.

As 3D Slicer does, we detect both, report them in plain words, and correct them by resampling
onto a regular grid with orthogonal axes (row, column, normal): each output voxel is placed at
its true LPS position and interpolated linearly between the two acquired slices around it, each
sampled at the in-plane position the point projects to. The output covers the union of all
slices' footprints, so nothing acquired is cut away; voxels outside every slice get ``fill``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

# Deviations below these are rounding in the header, not geometry.
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_REL = 1e-3
SHEAR_TOLERANCE_PIXELS = 0.05


@dataclass
class StackGeometry:
    """What the slice positions of one sorted stack say about its geometry."""

    normal_positions: np.ndarray  # distance of each slice origin along the normal (mm), increasing
    inplane_offsets: np.ndarray  # (n, 2) slice-origin offsets from the first along row/col dir (mm)
    slice_spacing: float  # regular spacing (median step along the normal), mm
    tilt_degrees: float = 0.0
    irregular: bool = False
    sheared: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def needs_resampling(self) -> bool:
        return self.irregular or self.sheared


def analyse_positions(
    positions: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    pixel_spacing: tuple[float, float],
    fallback_spacing: float = 1.0,
) -> StackGeometry:
    """Check a stack's slice origins (n, 3), sorted along the normal ``row_dir x col_dir``."""
    positions = np.asarray(positions, dtype=np.float64)
    normal = np.cross(row_dir, col_dir)
    d = positions @ normal
    rel = positions - positions[0]
    offsets = np.stack([rel @ row_dir, rel @ col_dir], axis=1)
    if len(d) < 2:
        return StackGeometry(d, offsets, float(fallback_spacing))
    steps = np.diff(d)
    spacing = statistics.median(steps.tolist())  # np.median's first call imports numpy.ma (~60 ms)
    geom = StackGeometry(d, offsets, spacing)
    if spacing <= 0:
        raise ValueError("slices share one position: cannot form a volume")
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * spacing)
    if np.max(np.abs(steps - spacing)) > tolerance:
        geom.irregular = True
        geom.warnings.append(
            f"Irregular slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm "
            f"(median {spacing:.3f} mm); resampled to a regular {spacing:.3f} mm grid"
        )
    # Shear: in-plane drift of the slice origins against distance along the normal.
    drift = offsets / np.asarray([pixel_spacing[1], pixel_spacing[0]])
    if np.max(np.abs(drift)) > SHEAR_TOLERANCE_PIXELS:
        geom.sheared = True
        extent = d[-1] - d[0]
        slope_mm = np.linalg.norm(offsets[-1]) / extent if extent > 0 else 0.0
        geom.tilt_degrees = float(np.degrees(np.arctan(slope_mm)))
        geom.warnings.append(
            f"Gantry tilt / sheared slices ({geom.tilt_degrees:.2f} degrees): resampled onto an orthogonal "
            "grid so anatomy is not distorted"
        )
    return geom


@dataclass
class RegularGrid:
    """The regular grid a corrected stack is resampled onto (same meaning as Volume's fields)."""

    voxels: np.ndarray
    origin: np.ndarray
    spacing: tuple[float, float, float]
    direction: np.ndarray


def resample_to_regular(
    slices: np.ndarray,
    geom: StackGeometry,
    first_position: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    pixel_spacing: tuple[float, float],
    fill: float | None = None,
) -> RegularGrid:
    """Resample sorted slices ``[k, j, i(, c)]`` onto a regular orthogonal grid."""
    dr, dc = pixel_spacing
    normal = np.cross(row_dir, col_dir)
    n_in, rows, cols = slices.shape[:3]
    fill_value = float(slices.min()) if fill is None else float(fill)
    u = geom.inplane_offsets[:, 0]
    v = geom.inplane_offsets[:, 1]
    u0, v0 = float(u.min()), float(v.min())
    out_cols = cols + int(np.ceil((u.max() - u0) / dc - 1e-6))
    out_rows = rows + int(np.ceil((v.max() - v0) / dr - 1e-6))
    d = geom.normal_positions
    step = geom.slice_spacing
    n_out = int(np.floor((d[-1] - d[0]) / step + 1e-6)) + 1
    out = np.empty((n_out, out_rows, out_cols) + slices.shape[3:], dtype=slices.dtype)
    for k in range(n_out):
        s = d[0] + k * step
        b = int(np.clip(np.searchsorted(d, s, side="right"), 1, n_in - 1))
        a = b - 1
        w = 0.0 if d[b] == d[a] else float(np.clip((s - d[a]) / (d[b] - d[a]), 0.0, 1.0))
        plane = (1.0 - w) * _shifted(
            slices[a], (u0 - u[a]) / dc, (v0 - v[a]) / dr, out_rows, out_cols, fill_value
        )
        if w > 0:
            plane += w * _shifted(
                slices[b], (u0 - u[b]) / dc, (v0 - v[b]) / dr, out_rows, out_cols, fill_value
            )
        out[k] = np.rint(plane) if out.dtype.kind in "iu" else plane
    origin = first_position + u0 * row_dir + v0 * col_dir
    direction = np.column_stack([row_dir, col_dir, normal])
    return RegularGrid(out, origin, (float(dc), float(dr), float(step)), direction)


def _shifted(img: np.ndarray, di: float, dj: float, out_rows: int, out_cols: int, fill: float) -> np.ndarray:
    """Sample ``img`` (rows, cols[, c]) at ``(j + dj, i + di)`` for an output grid, bilinear,
    ``fill`` outside."""
    src = img.astype(np.float32)
    src = _shift_axis(src, dj, out_rows, fill, axis=0)
    return _shift_axis(src, di, out_cols, fill, axis=1)


def _shift_axis(src: np.ndarray, delta: float, n_out: int, fill: float, axis: int) -> np.ndarray:
    n_in = src.shape[axis]
    base = int(np.floor(delta))
    frac = delta - base
    idx = np.arange(n_out) + base
    padded = np.concatenate(
        [
            np.full_like(np.take(src, [0], axis=axis), fill),
            src,
            np.full_like(np.take(src, [0], axis=axis), fill),
        ],
        axis=axis,
    )
    # padded index p = original index + 1; anything outside [-1, n_in] maps to a fill cell
    i0 = np.clip(idx + 1, 0, n_in + 1)
    i1 = np.clip(idx + 2, 0, n_in + 1)
    lo = np.take(padded, i0, axis=axis)
    if frac < 1e-9:
        return lo
    hi = np.take(padded, i1, axis=axis)
    return (1.0 - frac) * lo + frac * hi
