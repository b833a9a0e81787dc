"""Grayscale Softcopy Presentation States: how someone wanted images shown.

:func:`read_presentation_state` turns a GSPS into plain data: the images it applies to, the
window (Softcopy VOI LUT), rotation and horizontal flip (Spatial Transformation), the displayed
area, and the graphic and text annotations per image in image pixel coordinates (DISPLAY units
are kept as fractions of the displayed area, as the standard defines them). :func:`apply_to_view`
sets a view's window, rotation, flip and displayed area from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset

from viewer.object_kinds import object_kind
from viewer.view_state import ViewState


@dataclass(frozen=True)
class Graphic:
    kind: str  # POINT, POLYLINE, INTERPOLATED, CIRCLE, ELLIPSE
    points: np.ndarray  # (n, 2) as (column, row), 1-based image pixels or 0..1 display fractions
    units: str  # PIXEL or DISPLAY
    filled: bool = False
    layer: str = ""


@dataclass(frozen=True)
class TextNote:
    text: str
    anchor: tuple[float, float] | None  # (column, row) the text points at, if any
    box: tuple[float, float, float, float] | None  # (left, top, right, bottom) of the text box
    units: str
    layer: str = ""


@dataclass
class PresentationState:
    label: str
    description: str
    referenced: dict[str, tuple[int, ...]]  # SOP Instance UID -> frames ((): all)
    window: tuple[float, float] | None  # (width, center)
    rotation: int  # 0, 90, 180, 270 clockwise
    flip_horizontal: bool
    displayed_area: tuple[float, float, float, float] | None  # (left, top, right, bottom), pixels
    graphics: dict[str, list[Graphic]] = field(default_factory=dict)  # "" = every referenced image
    texts: dict[str, list[TextNote]] = field(default_factory=dict)

    def applies_to(self, sop_instance_uid: str) -> bool:
        return sop_instance_uid in self.referenced

    def graphics_for(self, sop_instance_uid: str) -> list[Graphic]:
        return self.graphics.get("", []) + self.graphics.get(sop_instance_uid, [])

    def texts_for(self, sop_instance_uid: str) -> list[TextNote]:
        return self.texts.get("", []) + self.texts.get(sop_instance_uid, [])


def _referenced_images(ds: Dataset) -> dict[str, tuple[int, ...]]:
    found: dict[str, tuple[int, ...]] = {}
    for series in ds.get("ReferencedSeriesSequence", []):
        for image in series.get("ReferencedImageSequence", []):
            frames = image.get("ReferencedFrameNumber")
            frames = () if frames is None else tuple(int(f) for f in np.atleast_1d(frames))
            found[str(image.ReferencedSOPInstanceUID)] = frames
    return found


def _targets(item: Dataset, everything: dict[str, tuple[int, ...]]) -> list[str]:
    """The SOP Instance UIDs an annotation or VOI item applies to ("" = all referenced images)."""
    refs = item.get("ReferencedImageSequence")
    return [str(ref.ReferencedSOPInstanceUID) for ref in refs] if refs else [""]


def _window(ds: Dataset) -> tuple[float, float] | None:
    for voi in ds.get("SoftcopyVOILUTSequence", []):
        if "WindowWidth" in voi and "WindowCenter" in voi:
            width, center = np.atleast_1d(voi.WindowWidth)[0], np.atleast_1d(voi.WindowCenter)[0]
            return float(width), float(center)
    return None


def _displayed_area(ds: Dataset) -> tuple[float, float, float, float] | None:
    for area in ds.get("DisplayedAreaSelectionSequence", []):
        if "DisplayedAreaTopLeftHandCorner" in area and "DisplayedAreaBottomRightHandCorner" in area:
            (left, top), (right, bottom) = (
                area.DisplayedAreaTopLeftHandCorner,
                area.DisplayedAreaBottomRightHandCorner,
            )
            return float(left), float(top), float(right), float(bottom)
    return None


def read_presentation_state(ds: Dataset) -> PresentationState:
    if object_kind(str(ds.get("SOPClassUID", ""))) != "pr":
        raise ValueError("not a Grayscale Softcopy Presentation State")
    referenced = _referenced_images(ds)
    rotation = int(ds.get("ImageRotation", 0) or 0) % 360
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"image rotation {rotation} is not a multiple of 90 degrees")
    state = PresentationState(
        label=str(ds.get("ContentLabel", "")),
        description=str(ds.get("ContentDescription", "")),
        referenced=referenced,
        window=_window(ds),
        rotation=rotation,
        flip_horizontal=str(ds.get("ImageHorizontalFlip", "N")).upper() == "Y",
        displayed_area=_displayed_area(ds),
    )
    for annotation in ds.get("GraphicAnnotationSequence", []):
        layer = str(annotation.get("GraphicLayer", ""))
        targets = _targets(annotation, referenced)
        for obj in annotation.get("GraphicObjectSequence", []):
            points = np.asarray(obj.GraphicData, dtype=np.float64).reshape(-1, 2)
            graphic = Graphic(
                str(obj.GraphicType),
                points,
                str(obj.get("GraphicAnnotationUnits", "PIXEL")),
                str(obj.get("GraphicFilled", "N")).upper() == "Y",
                layer,
            )
            for target in targets:
                state.graphics.setdefault(target, []).append(graphic)
        for obj in annotation.get("TextObjectSequence", []):
            anchor = obj.get("AnchorPoint")
            box_tl, box_br = (
                obj.get("BoundingBoxTopLeftHandCorner"),
                obj.get("BoundingBoxBottomRightHandCorner"),
            )
            note = TextNote(
                str(obj.get("UnformattedTextValue", "")),
                (float(anchor[0]), float(anchor[1])) if anchor is not None else None,
                (float(box_tl[0]), float(box_tl[1]), float(box_br[0]), float(box_br[1]))
                if box_tl is not None and box_br is not None
                else None,
                str(
                    obj.get("AnchorPointAnnotationUnits", "")
                    or obj.get("BoundingBoxAnnotationUnits", "PIXEL")
                ),
                layer,
            )
            for target in targets:
                state.texts.setdefault(target, []).append(note)
    return state


def apply_to_view(
    state: ViewState, ps: PresentationState, image_shape: tuple[int, int], pixel_spacing: tuple[float, float]
) -> None:
    """Show an image as ``ps`` asks: its window, rotation then horizontal flip (the standard's
    order), and its displayed area filling the view. ``image_shape`` is (rows, columns) and
    ``pixel_spacing`` (between rows, between columns) of the referenced image as displayed."""
    state.reset()
    if ps.window is not None:
        state.set_window(*ps.window)
    if ps.rotation:
        state.rotate_clockwise(ps.rotation)
    if ps.flip_horizontal:
        state.flip_horizontal()
    if ps.displayed_area is None:
        return
    left, top, right, bottom = ps.displayed_area  # 1-based pixel columns/rows, inclusive
    rows, cols = image_shape
    width, height = max(right - left + 1, 1.0), max(bottom - top + 1, 1.0)
    state.zoom_by(min(cols / width, rows / height))
    centre_offset = np.array([(left + right) / 2 - (cols + 1) / 2, (top + bottom) / 2 - (rows + 1) / 2])
    offset_mm = centre_offset * np.array([pixel_spacing[1], pixel_spacing[0]])
    screen = state.display_matrix() @ offset_mm
    state.pan_by(float(screen[0]), float(screen[1]))
