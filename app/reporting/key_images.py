"""Key images from what is on screen: the displayed pixels (for the PDF) and, when the plane is
the acquired one, the source instance it came from (for the SR references)."""

from __future__ import annotations

import numpy as np

from app.assistant.ai_inputs import AIView, visual_item_for
from app.assistant.chat import ScreenContext
from app.reporting.report import KeyImage
from viewer.sources import source_for_plane


def capture_key_image(
    ctx: ScreenContext, plane: str, index: int, window: tuple[float, float] | None
) -> tuple[KeyImage | None, np.ndarray]:
    """(reference or None, displayed RGB pixels) of one plane image.

    The reference names the acquired instance the plane lies on (the nearest acquired slice of a
    resampled volume); a reformat across the acquired slices has none."""
    width, level = window if window else (None, None)
    item = visual_item_for(
        ctx.volume, AIView(mode="2d", plane=plane, index=index, window=width, level=level, invert=ctx.invert)
    )
    pixels = item.frames[0]
    source = source_for_plane(ctx.volume, plane, index)
    if source is None or not source.sop_instance_uid:
        return None, pixels
    sop_class = str(ctx.volume.metadata.get("sop_class_uid", "")) or _sop_class(source.path)
    frame = source.frame + 1 if _is_multiframe(source.path) else None
    return KeyImage(ctx.series_uid, source.sop_instance_uid, sop_class, frame=frame, path=source.path), pixels


def _sop_class(path: str) -> str:
    from pydicom import dcmread

    return (
        str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID) if path else ""
    )


def _is_multiframe(path: str) -> bool:
    from pydicom import dcmread

    if not path:
        return False
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
    return int(ds.get("NumberOfFrames", 1) or 1) > 1
