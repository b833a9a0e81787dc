"""What the object overlays put on a shown plane, in that plane's pixel coordinates (no Qt).

A view asks each layer for the :class:`OverlayFrame` of the plane it shows: a colour image aligned
with the plane's pixels (segmentations, sampled at the pixel centres) and polylines (structure
contours, cut by the plane where they cross it; a frame around a key image). They follow the plane
wherever it goes: axial, coronal, sagittal or oblique.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from viewer.objects.gsps import PresentationState
from viewer.objects.rtstruct import Roi, contour_on_plane
from viewer.objects.seg import SegOverlay
from viewer.reslice import Plane, PlaneImage, stack_step_count
from viewer.sources import (
    PARALLEL_TOLERANCE,
    SourceInstance,
    acquired_slices,
    source_at_lps,
    source_for_plane,
)
from viewer.volume import Volume


@dataclass
class Polyline:
    points: np.ndarray  # (n, 2) plane pixels as (column, row)
    colour: tuple[int, int, int]
    closed: bool
    label: str = ""


@dataclass
class OverlayFrame:
    rgba: np.ndarray | None = None  # (rows, cols, 4) uint8 over the plane, or None
    polylines: list[Polyline] = field(default_factory=list)


def plane_pixel_lps(plane: PlaneImage) -> np.ndarray:
    """LPS centre of every pixel of ``plane``: (rows, cols, 3)."""
    rows, cols = plane.pixels.shape[:2]
    r = np.arange(rows, dtype=np.float64)[:, None, None] * plane.pixel_spacing[0] * plane.col_dir
    c = np.arange(cols, dtype=np.float64)[None, :, None] * plane.pixel_spacing[1] * plane.row_dir
    return plane.origin + r + c


@dataclass
class SegLayer:
    """A segmentation over its referenced series; ``hidden`` holds the segment numbers toggled off."""

    overlay: SegOverlay
    volume: Volume
    opacity: float = 0.45
    hidden: set[int] = field(default_factory=set)

    def frame_for(self, plane: PlaneImage) -> OverlayFrame:
        ijk = np.rint(self.volume.lps_to_index(plane_pixel_lps(plane))).astype(np.int64)
        size = np.asarray(self.volume.shape_ijk)
        inside = np.all((ijk >= 0) & (ijk < size), axis=-1)
        rgba = np.zeros(plane.pixels.shape[:2] + (4,), dtype=np.float32)
        i, j, k = (np.where(inside, ijk[..., n], 0) for n in range(3))
        for segment, mask in zip(self.overlay.segments, self.overlay.masks):
            if segment.number in self.hidden:
                continue
            alpha = np.where(inside, mask[k, j, i], 0.0) * self.opacity
            rgba[..., :3] += (
                alpha[..., None] * np.asarray(segment.colour, dtype=np.float32) * (1 - rgba[..., 3:])
            )
            rgba[..., 3] += alpha * (1 - rgba[..., 3])
        shown = rgba[..., 3] > 0
        rgba[shown, :3] /= rgba[shown, 3:4]  # straight (not premultiplied) colour
        rgba[..., 3] *= 255
        return OverlayFrame(rgba=np.clip(rgba, 0, 255).astype(np.uint8) if shown.any() else None)


@dataclass
class StructureLayer:
    """An RT structure set: each ROI's contours where the plane shows or cuts them."""

    rois: list[Roi]
    slice_tolerance_mm: float  # half the spacing between the planes the view steps through
    hidden: set[int] = field(default_factory=set)

    def frame_for(self, plane: PlaneImage) -> OverlayFrame:
        normal = np.cross(plane.row_dir, plane.col_dir)
        lines = []

        def to_pixels(points: np.ndarray) -> np.ndarray:
            return np.array([plane.from_lps(p)[::-1] for p in points])

        for roi in self.rois:
            if roi.number in self.hidden:
                continue
            for contour in roi.contours:
                whole, cuts = contour_on_plane(contour, plane.origin, normal, self.slice_tolerance_mm)
                if len(whole):
                    lines.append(Polyline(to_pixels(whole), roi.colour, True, roi.name))
                lines += [Polyline(to_pixels(np.array(cut)), roi.colour, False, roi.name) for cut in cuts]
        return OverlayFrame(polylines=lines)


def shown_source(volume: Volume, plane: PlaneImage) -> SourceInstance | None:
    """The acquired image a shown plane is (parallel to the acquired slices and within half a slice
    of one), or None for a reformat that crosses many of them."""
    normal = np.cross(plane.row_dir, plane.col_dir)
    slice_axis = np.asarray(volume.direction, dtype=np.float64)[:, 2]
    if abs(float(normal @ slice_axis)) < 1.0 - PARALLEL_TOLERANCE:
        return None
    rows, cols = plane.pixels.shape[:2]
    source = source_at_lps(volume, plane.to_lps((rows - 1) / 2, (cols - 1) / 2))
    return source if source is not None and source.distance_mm <= float(volume.spacing[2]) / 2 else None


@dataclass
class KeyImageLayer:
    """Frames the shown plane when it is one of a key object selection's images."""

    volume: Volume
    sop_instance_uids: frozenset[str]
    colour: tuple[int, int, int] = (255, 210, 0)
    hidden: set[int] = field(default_factory=set)

    def is_key(self, plane: PlaneImage) -> bool:
        source = shown_source(self.volume, plane)
        return source is not None and source.sop_instance_uid in self.sop_instance_uids

    def frame_for(self, plane: PlaneImage) -> OverlayFrame:
        if self.hidden or not self.is_key(plane):
            return OverlayFrame()
        rows, cols = plane.pixels.shape[:2]
        edge = np.array([[-0.5, -0.5], [cols - 0.5, -0.5], [cols - 0.5, rows - 0.5], [-0.5, rows - 0.5]])
        return OverlayFrame(polylines=[Polyline(edge, self.colour, True, "KEY IMAGE")])


def key_plane_indices(volume: Volume, plane: Plane, sop_instance_uids: frozenset[str]) -> list[int]:
    """The scroll steps of ``plane`` that show one of the key images, in order."""
    found = []
    for index in range(stack_step_count(volume, plane)):
        source = source_for_plane(volume, plane, index)
        if source is not None and source.sop_instance_uid in sop_instance_uids:
            found.append(index)
    return found


def _shape_points(kind: str, points: np.ndarray) -> tuple[np.ndarray, bool]:
    """A GSPS graphic as a polyline (points as given, or sampled circle/ellipse), and whether closed."""
    if kind == "CIRCLE":
        centre, edge = points[0], points[1]
        radius = float(np.hypot(*(edge - centre)))
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), True
    if kind == "ELLIPSE":
        (a0, a1, b0, b1), angles = points[:4], np.linspace(0, 2 * np.pi, 48, endpoint=False)
        centre, major, minor = (a0 + a1) / 2, (a1 - a0) / 2, (b1 - b0) / 2
        return centre + np.cos(angles)[:, None] * major + np.sin(angles)[:, None] * minor, True
    if kind == "POINT":
        p = points[0]
        return np.array([p + (-2, 0), p + (2, 0), p, p + (0, -2), p + (0, 2)]), False
    closed = len(points) > 2 and np.allclose(points[0], points[-1])
    return (points[:-1] if closed else points), closed


@dataclass
class PresentationLayer:
    """A presentation state's graphic and text annotations on the images it names.

    ``image_geometry(sop_instance_uid)`` gives (position, row direction, column direction,
    (row spacing, column spacing)) of an acquired image, so annotations in that image's pixel
    coordinates land on the same anatomy in the plane shown (PIXEL units: 0\\0 is the top left
    corner of the image; DISPLAY units are fractions of the image)."""

    state: PresentationState
    volume: Volume
    image_geometry: Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]]
    colour: tuple[int, int, int] = (120, 230, 255)
    hidden: set[int] = field(default_factory=set)

    def frame_for(self, plane: PlaneImage) -> OverlayFrame:
        source = None if self.hidden else shown_source(self.volume, plane)
        if source is None:
            return OverlayFrame()
        uid = source.sop_instance_uid
        if not self.state.applies_to(uid):
            return OverlayFrame()
        origin, row_dir, col_dir, (row_mm, col_mm) = self.image_geometry(uid)

        def to_plane(image_points: np.ndarray, units: str, size: tuple[float, float]) -> np.ndarray:
            pts = image_points * np.asarray(size) if units == "DISPLAY" else image_points
            lps = origin + (pts[:, :1] - 0.5) * col_mm * row_dir + (pts[:, 1:2] - 0.5) * row_mm * col_dir
            return np.array([plane.from_lps(p)[::-1] for p in lps])

        size = (float(self.volume.shape_ijk[0]), float(self.volume.shape_ijk[1]))  # DISPLAY units' frame
        lines = []
        for graphic in self.state.graphics_for(uid):
            points, closed = _shape_points(graphic.kind, graphic.points)
            lines.append(Polyline(to_plane(points, graphic.units, size), self.colour, closed))
        for note in self.state.texts_for(uid):
            at = note.anchor or (note.box[:2] if note.box else None)
            if at is not None:
                lines.append(
                    Polyline(to_plane(np.array([at]), note.units, size), self.colour, False, note.text)
                )
        return OverlayFrame(polylines=lines)


def file_geometry(
    volume: Volume,
) -> Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]]:
    """``image_geometry`` for :class:`PresentationLayer` read from the acquired files' headers."""
    from functools import cache

    from pydicom import dcmread

    uids, sources, _ = acquired_slices(volume)
    paths = {uid: path for uid, (path, _frame) in zip(uids, sources)}

    @cache
    def geometry(uid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
        ds = dcmread(paths[uid], stop_before_pixels=True)
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        return (
            np.asarray(ds.ImagePositionPatient, dtype=np.float64),
            orientation[:3],
            orientation[3:],
            (row_mm, col_mm),
        )

    return geometry
