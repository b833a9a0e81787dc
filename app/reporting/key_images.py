"""Key images from what is on screen: the displayed pixels (for the PDF) and, when the plane is
the acquired one, the source instance it came from (for the SR references)."""

from __future__ import annotations

import numpy as np

from app.ai_inputs import AIView, visual_item_for
from app.reporting.chat import ScreenContext
from app.reporting.report import KeyImage
from viewer.reslice import plane_image


def source_slice(ctx: ScreenContext, plane: str, index: int) -> int | None:
    """The acquired slice ``k`` that the displayed plane image lies on, or None for a reformat."""
    volume = ctx.volume
    if plane == "native":
        return index
    image = plane_image(volume, plane, index=index)
    axis = np.cross(image.row_dir, image.col_dir)
    slice_axis = np.asarray(volume.direction, dtype=np.float64)[:, 2]
    if abs(float(axis @ slice_axis)) < 0.999:
        return None
    depth = volume.voxels.shape[0]
    centres = volume.index_to_lps(np.stack([np.zeros(depth), np.zeros(depth), np.arange(depth)], axis=1))
    distance = np.abs((centres - image.origin) @ axis)
    k = int(np.argmin(distance))
    return k if distance[k] <= 0.5 * float(volume.spacing[2]) + 1e-6 else None


def capture_key_image(
    ctx: ScreenContext, plane: str, index: int, window: tuple[float, float] | None
) -> tuple[KeyImage | None, np.ndarray]:
    """(reference or None, displayed RGB pixels) of one plane image."""
    width, level = window if window else (None, None)
    item = visual_item_for(
        ctx.volume, AIView(mode="2d", plane=plane, index=index, window=width, level=level, invert=ctx.invert)
    )
    pixels = item.frames[0]
    k = source_slice(ctx, plane, index)
    metadata = ctx.volume.metadata
    uids = list(metadata.get("sop_instance_uids", []) or [])
    sources = list(metadata.get("sources", []) or [])
    if k is None or k >= len(uids) or not uids[k]:
        return None, pixels
    path, frame = sources[k] if k < len(sources) else ("", None)
    sop_class = str(metadata.get("sop_class_uid", "")) or _sop_class(path)
    frames = int(frame) + 1 if frame is not None and _is_multiframe(path) else None
    return KeyImage(ctx.series_uid, uids[k], sop_class, frame=frames, path=str(path)), pixels


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
