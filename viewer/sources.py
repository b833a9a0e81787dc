"""Which acquired instance a displayed plane or an LPS point comes from.

Key-image references in a report and the chat's "the answer rests on slice N" links must name the
DICOM instance the radiologist saw. The scroll index of a standard plane counts from the feet /
anterior / right whatever the acquisition (see :mod:`viewer.reslice`), and a gantry-tilted or
irregularly spaced series is resampled onto a new grid, so neither the plane index nor the voxel
slice index can be used to pick from the acquired instances. This module maps by geometry::

    src = source_for_plane(volume, "axial", index=N)   # None for a reformat (e.g. coronal of axials)
    src = source_at_lps(volume, (x, y, z))             # nearest acquired slice to a point
    src.sop_instance_uid, src.path, src.frame, src.distance_mm

The nearest acquired slice is measured along the acquired slices' normal; ``distance_mm`` is 0
for a plane that *is* an acquired slice and grows for planes of a resampled volume that lie
between two acquired slices. Images without patient geometry (cine, radiographs) map frame by
frame on their native plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from viewer.reslice import Plane, plane_point
from viewer.volume import Volume

PARALLEL_TOLERANCE = 1e-3  # 1 - |cos| between a plane's normal and the slices' (about 2.6 degrees)


@dataclass(frozen=True)
class SourceInstance:
    """One acquired slice: the instance (and frame in it) a displayed plane comes from."""

    sop_instance_uid: str
    path: str
    frame: int  # 0-based frame in the file (DICOM Referenced Frame Number is frame + 1)
    acquired_index: int  # position among the acquired slices sorted along their normal
    distance_mm: float  # from the plane / point to that slice, along the slices' normal

    def as_dict(self) -> dict[str, object]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "path": self.path,
            "frame": self.frame,
            "acquired_index": self.acquired_index,
            "distance_mm": round(self.distance_mm, 4),
        }


def acquired_slices(volume: Volume) -> tuple[list[str], list[tuple[str, int]], np.ndarray]:
    """(SOP Instance UIDs, (path, frame) sources, distance of each slice along the volume's slice
    axis in mm) of the acquired slices, sorted along the normal; empty when unknown.

    A resampled volume keeps them in ``acquired_*`` metadata (its voxel slices are interpolated);
    otherwise voxel slice k is acquired slice k."""
    md = volume.metadata
    if "acquired_sop_instance_uids" in md:
        uids = [str(u) for u in md["acquired_sop_instance_uids"]]  # type: ignore[union-attr]
        sources = [(str(p), int(f)) for p, f in md.get("acquired_sources", [])]  # type: ignore[union-attr]
        distances = np.asarray(md.get("acquired_positions_mm", []), dtype=np.float64)
    else:
        uids = [str(u) for u in md.get("sop_instance_uids", []) or []]  # type: ignore[union-attr]
        sources = [(str(p), int(f)) for p, f in md.get("sources", []) or []]  # type: ignore[union-attr]
        depth = volume.voxels.shape[0]
        centres = volume.index_to_lps(np.stack([np.zeros(depth), np.zeros(depth), np.arange(depth)], axis=1))
        distances = centres @ _slice_axis(volume)
    n = min(len(uids), len(sources), len(distances))
    return uids[:n], sources[:n], distances[:n]


def source_at_lps(volume: Volume, lps: Sequence[float] | np.ndarray) -> SourceInstance | None:
    """The acquired slice nearest to an LPS point (along the slices' normal); None when the
    volume has no patient geometry or no per-slice sources."""
    if not volume.metadata.get("has_patient_geometry", True):
        return None
    uids, sources, distances = acquired_slices(volume)
    if not uids:
        return None
    along = float(np.asarray(lps, dtype=np.float64) @ _slice_axis(volume))
    return _nearest(uids, sources, distances, along)


def source_for_plane(
    volume: Volume, plane: Plane, index: int | None = None, *, position_mm: float | None = None
) -> SourceInstance | None:
    """The acquired slice a plane (scroll step ``index`` or ``position_mm``, as
    :func:`viewer.reslice.plane_image`) lies on or nearest to; None when the plane is not
    parallel to the acquired slices (a reformat draws on many of them) or sources are unknown."""
    if not volume.metadata.get("has_patient_geometry", True):
        if plane != "native" or index is None:
            return None
        uids, sources, _ = acquired_slices(volume)
        if not 0 <= index < min(len(uids), len(sources)):
            return None
        path, frame = sources[index]
        return SourceInstance(uids[index], path, frame, index, 0.0)
    point, normal = plane_point(volume, plane, position_mm, index=index)
    if abs(float(normal @ _slice_axis(volume))) < 1.0 - PARALLEL_TOLERANCE:
        return None
    return source_at_lps(volume, point)


def _slice_axis(volume: Volume) -> np.ndarray:
    return np.asarray(volume.direction, dtype=np.float64)[:, 2]


def _nearest(
    uids: list[str], sources: list[tuple[str, int]], distances: np.ndarray, along: float
) -> SourceInstance:
    gaps = np.abs(distances - along)
    k = int(np.argmin(gaps))
    path, frame = sources[k]
    return SourceInstance(uids[k], path, frame, k, float(gaps[k]))
