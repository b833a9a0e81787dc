"""Measurement math on a displayed plane (pure numpy, no Qt).

Points are continuous pixel coordinates ``(column, row)`` of a 2D plane whose pixel centres sit at
integer coordinates; ``spacing`` is ``(column spacing, row spacing)`` in mm. Values are in the
plane's modality units (HU for CT), so ROI statistics read directly as HU.

A :class:`Calibration` says whether that spacing can be trusted: images without one (ultrasound
without calibrated regions, secondary captures, video) measure in px and px², and
spacing taken from Imager Pixel Spacing is labelled "at detector" (not corrected for
magnification), as DICOM PS3.3 and IHE ask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]

SPACING_PIXEL = "PixelSpacing"
SPACING_IMAGER = "ImagerPixelSpacing (at detector, not calibrated)"
SPACING_US = "US regions"
SPACING_SOURCES = (SPACING_PIXEL, SPACING_IMAGER, SPACING_US)


@dataclass(frozen=True)
class Calibration:
    """Whether plane pixels have a trustworthy physical size, and a qualifier for the values."""

    known: bool = True
    note: str = ""  # "at detector" for Imager Pixel Spacing

    @property
    def length_unit(self) -> str:
        return "mm" if self.known else "px"

    @property
    def area_unit(self) -> str:
        return "mm\N{SUPERSCRIPT TWO}" if self.known else "px\N{SUPERSCRIPT TWO}"

    def suffix(self) -> str:
        return f" ({self.note})" if self.note and self.known else ""


MM = Calibration()
PIXELS = Calibration(known=False)


def calibration_from_metadata(metadata: Mapping[str, object]) -> Calibration:
    """The calibration the loader found (``pixel_spacing_known`` / ``pixel_spacing_source``);
    volumes without those keys (built in code) are taken as calibrated."""
    if not metadata.get("pixel_spacing_known", True):
        return PIXELS
    if metadata.get("pixel_spacing_source") == SPACING_IMAGER:
        return Calibration(True, "at detector")
    return MM


def _mm(point: Point, spacing: Sequence[float]) -> np.ndarray:
    return np.asarray(point, dtype=np.float64) * np.asarray(spacing[:2], dtype=np.float64)


def length_mm(p0: Point, p1: Point, spacing: Sequence[float]) -> float:
    """Distance between two points in mm (anisotropic pixels handled)."""
    return float(np.linalg.norm(_mm(p1, spacing) - _mm(p0, spacing)))


def angle_deg(a: Point, vertex: Point, b: Point, spacing: Sequence[float]) -> float:
    """Angle a-vertex-b in degrees (0..180), measured in mm space."""
    u = _mm(a, spacing) - _mm(vertex, spacing)
    v = _mm(b, spacing) - _mm(vertex, spacing)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise ValueError("an angle needs three distinct points")
    return math.degrees(math.acos(float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def pixel_value(image: np.ndarray, point: Point) -> float | None:
    """Value of the pixel containing ``point`` (nearest centre), or None outside the image."""
    col, row = (int(math.floor(c + 0.5)) for c in point)
    if 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
        return float(image[row, col])
    return None


@dataclass(frozen=True)
class RoiStats:
    """``area_mm2`` is NaN when the spacing is unknown; ``area_px2`` is the area in pixels."""

    mean: float
    sd: float
    minimum: float
    maximum: float
    area_mm2: float
    pixel_count: int
    area_px2: float = math.nan


def roi_mask(shape: tuple[int, int], p0: Point, p1: Point, kind: str) -> np.ndarray:
    """Pixels whose centres lie in the rectangle/ellipse spanned by corners ``p0`` and ``p1``."""
    (c0, r0), (c1, r1) = p0, p1
    cmin, cmax, rmin, rmax = min(c0, c1), max(c0, c1), min(r0, r1), max(r0, r1)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    if kind == "rectangle":
        return (cols >= cmin) & (cols <= cmax) & (rows >= rmin) & (rows <= rmax)
    if kind == "ellipse":
        a, b = (cmax - cmin) / 2, (rmax - rmin) / 2
        if a == 0 or b == 0:
            return np.zeros(shape, dtype=bool)
        return ((cols - (cmin + cmax) / 2) / a) ** 2 + ((rows - (rmin + rmax) / 2) / b) ** 2 <= 1.0
    raise ValueError(f"unknown ROI kind {kind!r} (rectangle or ellipse)")


def _area(p0: Point, p1: Point, spacing: Sequence[float], kind: str) -> float:
    width = abs(p1[0] - p0[0]) * spacing[0]
    height = abs(p1[1] - p0[1]) * spacing[1]
    return width * height if kind == "rectangle" else math.pi * width * height / 4


def roi_stats(
    image: np.ndarray,
    p0: Point,
    p1: Point,
    spacing: Sequence[float],
    kind: str = "rectangle",
    calibration: Calibration = MM,
) -> RoiStats:
    """Mean/SD/min/max of the pixels inside the ROI and its geometric area (mm^2 only when the
    calibration is known)."""
    mask = roi_mask(image.shape[:2], p0, p1, kind)
    if not mask.any():
        raise ValueError("the ROI contains no pixel centre")
    values = image[mask].astype(np.float64)
    return RoiStats(
        float(values.mean()),
        float(values.std()),
        float(values.min()),
        float(values.max()),
        float(_area(p0, p1, spacing, kind)) if calibration.known else math.nan,
        int(mask.sum()),
        float(_area(p0, p1, (1.0, 1.0), kind)),
    )


@dataclass
class Measurement:
    """One measurement or annotation drawn on a plane: ``kind`` is length, angle, rectangle,
    ellipse, arrow (two points, the head at the second) or text (one point and ``label``)."""

    kind: str
    points: list[Point]
    plane_key: tuple[object, ...]  # identifies the slice/plane it was drawn on
    value: float | RoiStats  # a length is in ``calibration.length_unit`` (mm or px)
    calibration: Calibration = MM
    points_lps: list[tuple[float, float, float]] | None = None  # the points in patient space, when known
    label: str = ""  # an annotation's text (arrow, text)

    def to_dict(self, unit: str = "") -> dict[str, object]:
        """Plain JSON-serialisable record: kind, points (plane pixels and LPS mm), the plane it is
        on and its values with units (``unit``: the modality unit of ROI values, e.g. "HU")."""
        cal = self.calibration
        record: dict[str, object] = {
            "kind": self.kind,
            "points": [[float(c), float(r)] for c, r in self.points],
            "points_lps": [[float(v) for v in p] for p in self.points_lps]
            if self.points_lps is not None
            else None,
            "plane": plain_data(self.plane_key),
            "calibrated": cal.known,
            "calibration_note": cal.note,
            "text": self.text(unit),
        }
        if self.kind in ANNOTATIONS:
            record.update(label=self.label)
        elif self.kind == "length":
            record.update(length=float(self.value), unit=cal.length_unit)  # type: ignore[arg-type]
        elif self.kind == "angle":
            record.update(angle_deg=float(self.value), unit="deg")  # type: ignore[arg-type]
        else:
            s = self.value
            assert isinstance(s, RoiStats)
            area = s.area_mm2 if cal.known else s.area_px2
            record.update(
                mean=s.mean,
                sd=s.sd,
                min=s.minimum,
                max=s.maximum,
                pixel_count=s.pixel_count,
                area=area,
                area_unit=cal.area_unit,
                unit=unit,
            )
        return record

    def text(self, unit: str = "") -> str:
        cal = self.calibration
        if self.kind in ANNOTATIONS:
            return self.label
        if self.kind == "length":
            return f"{self.value:.1f} {cal.length_unit}{cal.suffix()}"
        if self.kind == "angle":
            return f"{self.value:.1f}\N{DEGREE SIGN}"
        s = self.value
        assert isinstance(s, RoiStats)
        area = s.area_mm2 if cal.known else s.area_px2
        return (
            f"mean {s.mean:.1f} SD {s.sd:.1f} {unit}".rstrip()
            + f"\nmin {s.minimum:.0f} max {s.maximum:.0f}  area {area:.1f} {cal.area_unit}{cal.suffix()}"
        )


def plain_data(value: object) -> object:
    """``value`` as JSON types: tuples/arrays become lists, numpy scalars Python numbers and
    dataclasses (an oblique plane) dicts."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, Sequence | np.ndarray):
        return [plain_data(v) for v in value]
    return str(value)


POINTS_NEEDED = {"length": 2, "angle": 3, "rectangle": 2, "ellipse": 2, "arrow": 2, "text": 1}
ANNOTATIONS = ("arrow", "text")  # drawn marks without a measured value


def measure(
    kind: str,
    points: list[Point],
    image: np.ndarray,
    spacing: Sequence[float],
    plane_key: tuple[object, ...],
    calibration: Calibration = MM,
    points_lps: list[tuple[float, float, float]] | None = None,
    label: str = "",
) -> Measurement:
    """Build a finished measurement of ``kind`` from its points on ``image``; with an unknown
    calibration ``spacing`` is ignored and lengths/areas are in pixels. Annotations (arrow,
    text) carry ``label``. Raises ValueError for a degenerate one (a zero-size ROI or arrow)."""
    if len(points) != POINTS_NEEDED.get(kind, -1):
        raise ValueError(f"{kind} needs {POINTS_NEEDED.get(kind)} points, got {len(points)}")
    if not calibration.known:
        spacing = (1.0, 1.0)
    if kind in ("rectangle", "ellipse") and (
        abs(points[1][0] - points[0][0]) < 1.0 or abs(points[1][1] - points[0][1]) < 1.0
    ):
        raise ValueError(f"a {kind} ROI must span at least one pixel each way")
    if kind in ANNOTATIONS:
        if kind == "arrow" and math.dist(points[0], points[1]) < 1.0:
            raise ValueError("an arrow needs two distinct points")
        return Measurement(kind, list(points), plane_key, 0.0, calibration, points_lps, label)
    if kind == "length":
        value: float | RoiStats = length_mm(points[0], points[1], spacing)
    elif kind == "angle":
        value = angle_deg(points[0], points[1], points[2], spacing)
    else:
        value = roi_stats(image, points[0], points[1], spacing, kind, calibration)
    return Measurement(kind, list(points), plane_key, value, calibration, points_lps)
