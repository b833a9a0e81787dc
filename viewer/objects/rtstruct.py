"""RT Structure Sets: ROI contours (LPS polygons) with names and colours, and where they cross a plane.

A contour drawn on the plane being shown (an axial contour on its axial slice) is shown whole; on
any other plane (coronal, sagittal, oblique) each closed contour is cut by the plane and drawn as
the segments of the cut, so a structure shows in every plane as Eclipse or Slicer show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset

from viewer.object_kinds import object_kind


@dataclass
class Roi:
    number: int
    name: str
    colour: tuple[int, int, int]
    contours: list[np.ndarray] = field(default_factory=list)  # (n, 3) LPS points, closed planar polygons
    open_contours: list[np.ndarray] = field(default_factory=list)  # OPEN_PLANAR / OPEN_NONPLANAR / POINT


def read_structures(ds: Dataset) -> list[Roi]:
    """The set's ROIs with their contours (ROIs without contours are listed, empty)."""
    if object_kind(str(ds.get("SOPClassUID", ""))) != "rtstruct":
        raise ValueError("not an RT Structure Set")
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])}
    rois = {number: Roi(number, name or f"ROI {number}", (255, 255, 0)) for number, name in names.items()}
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        roi = rois.setdefault(number, Roi(number, f"ROI {number}", (255, 255, 0)))
        colour = roi_contour.get("ROIDisplayColor")
        if colour is not None and len(colour) == 3:
            roi.colour = tuple(int(c) for c in colour)  # type: ignore[assignment]
        for contour in roi_contour.get("ContourSequence", []):
            points = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            (roi.contours if kind == "CLOSED_PLANAR" and len(points) >= 3 else roi.open_contours).append(
                points
            )
    return sorted(rois.values(), key=lambda r: r.number)


def contour_on_plane(
    points: np.ndarray, origin: np.ndarray, normal: np.ndarray, tolerance_mm: float
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """How a closed contour meets a plane: (the whole polygon if it lies in it, else an empty
    array; the segments (a, b) in LPS where the plane cuts it)."""
    distance = (points - origin) @ normal
    if np.all(np.abs(distance) <= tolerance_mm):
        return points, []
    crossings = []
    for a in range(len(points)):
        b = (a + 1) % len(points)
        da, db = distance[a], distance[b]
        if (da > 0) != (db > 0) and da != db:
            t = da / (da - db)
            crossings.append(points[a] + t * (points[b] - points[a]))
    if len(crossings) < 2:
        return np.empty((0, 3)), []
    crossings_arr = np.asarray(crossings)
    direction = crossings_arr[-1] - crossings_arr[0]
    order = np.argsort(crossings_arr @ direction)
    ordered = crossings_arr[order]
    return np.empty((0, 3)), [(ordered[n], ordered[n + 1]) for n in range(0, len(ordered) - 1, 2)]
