"""Glue from what the viewer shows to what Hulu-Med sees: a Volume + view settings -> a VisualItem.

Used by the ``ask`` command, the chat panel and report drafting. The viewer reslices (planes in
radiological convention) and windows exactly as it displays; :mod:`inference.frames` turns the
result into model frames. Zoom, pan, flips and rotations are display-only and are NOT applied:
the model always gets the plane in standard radiological orientation at full resolution.

Modes: ``2d`` the current slice/frame; ``3d`` N slices sampled uniformly through the whole
stack in the chosen plane (no duplicates); ``video`` a cine sampled at ``fps`` with timestamps,
or, without frame timing, frames spread uniformly and labelled by number (timing unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from inference.frames import (
    DEFAULT_VIDEO_FPS,
    DEFAULT_VOLUME_SLICES,
    MAX_VIDEO_FRAMES,
    sample_slice_indices,
    to_rgb_uint8,
    video_item,
)
from inference.preprocess import VisualItem
from viewer.loader import expand_paths
from viewer.presets import default_window
from viewer.reslice import plane_image, plane_positions, value_range, window_to_uint8
from viewer.view_state import ViewState
from viewer.volume import Volume

AIMode = Literal["auto", "2d", "3d", "video"]
AI_MODES: tuple[str, ...] = ("auto", "2d", "3d", "video")


@dataclass
class AIView:
    """What to show the model. ``None`` means "as the viewer would open the series"."""

    mode: AIMode = "auto"
    plane: str | None = None  # axial/coronal/sagittal/native; None: axial with geometry, else native
    index: int | None = None  # 2D: slice (or cine frame) index in the plane; None: the middle one
    slices: int = DEFAULT_VOLUME_SLICES  # 3D: slices sampled through the stack
    window: float | None = None
    level: float | None = None
    invert: bool | None = None  # None: MONOCHROME1 images are inverted, as displayed
    fps: float = DEFAULT_VIDEO_FPS
    max_frames: int = MAX_VIDEO_FRAMES

    @classmethod
    def from_view_state(
        cls, state: ViewState, mode: AIMode = "2d", slices: int = DEFAULT_VOLUME_SLICES
    ) -> AIView:
        """What a 2D view currently shows: its plane, slice, window and invert (not zoom/flips)."""
        return cls(
            mode=mode,
            plane=state.plane,
            index=state.slice_index,
            slices=slices,
            window=state.window_width,
            level=state.window_center,
            invert=state.invert,
        )


def is_cine(volume: Volume) -> bool:
    """A multi-frame acquisition in time (ultrasound, XA) rather than a stack in space."""
    return bool(volume.frame_times_ms) and not volume.metadata.get("has_patient_geometry", True)


def resolve_mode(volume: Volume, view: AIView) -> Literal["2d", "3d", "video"]:
    """``auto``: video for a cine, 3D for a multi-slice stack with geometry, else 2D."""
    if view.mode not in AI_MODES:
        raise ValueError(f"mode must be one of {AI_MODES}, not {view.mode!r}")
    depth = volume.voxels.shape[0]
    if view.mode == "video" and depth < 2:
        raise ValueError("this series has a single frame: it cannot be shown as a video")
    if view.mode == "3d" and (depth < 2 or not volume.metadata.get("has_patient_geometry", True)):
        raise ValueError("this series is not a 3D stack with patient geometry: use 2d or video")
    if view.mode != "auto":
        return view.mode  # type: ignore[return-value]
    if is_cine(volume):
        return "video"
    if depth > 1 and volume.metadata.get("has_patient_geometry", True):
        return "3d"
    return "2d"


def resolve_plane(volume: Volume, view: AIView) -> str:
    if view.plane is not None:
        return view.plane
    return "axial" if volume.metadata.get("has_patient_geometry", True) else "native"


def resolve_window(volume: Volume, view: AIView) -> tuple[float, float] | None:
    """(width, level): the view's, else the viewer's opening window; None for colour images."""
    if volume.is_color:
        return None
    if view.window is not None and view.level is not None:
        if view.window < 1:
            raise ValueError(f"window width must be >= 1, got {view.window}")
        return float(view.window), float(view.level)
    preset = default_window(volume.metadata, value_range(volume))
    width = view.window if view.window is not None else preset.window
    level = view.level if view.level is not None else preset.level
    return float(width), float(level)


def _displayed(pixels: np.ndarray, window: tuple[float, float] | None, invert: bool) -> np.ndarray:
    """RGB uint8 exactly as the viewer displays it (its own window function)."""
    if window is None:
        return to_rgb_uint8(pixels if pixels.dtype == np.uint8 else np.clip(pixels, 0, 255).astype(np.uint8))
    return to_rgb_uint8(window_to_uint8(pixels, window[0], window[1], invert=invert))


def visual_item_for(volume: Volume, view: AIView | None = None) -> VisualItem:
    """The model input for ``volume`` shown as ``view`` says (see the module docstring)."""
    view = view or AIView()
    mode = resolve_mode(volume, view)
    window = resolve_window(volume, view)
    invert = bool(volume.metadata.get("invert", False)) if view.invert is None else view.invert
    series = str(volume.metadata.get("series_uid", ""))
    if mode == "video":
        # No frame timing: no invented times (video_item labels the frames by number instead).
        # video_item windows only the frames it samples (same DICOM formula as the display).
        return video_item(
            volume.voxels,
            volume.frame_times_ms or None,
            fps=view.fps,
            max_frames=view.max_frames,
            window=window,
            invert=invert,
            source=f"series {series} cine",
        )
    plane = resolve_plane(volume, view)
    depth = len(plane_positions(volume, plane))
    if mode == "3d":
        indices = sample_slice_indices(depth, view.slices)
        first = _displayed(plane_image(volume, plane, index=int(indices[0])).pixels, window, invert)
        frames = np.empty((len(indices), *first.shape), dtype=first.dtype)
        frames[0] = first
        for out, i in zip(frames[1:], indices[1:]):
            out[...] = _displayed(plane_image(volume, plane, index=int(i)).pixels, window, invert)
        return VisualItem(
            frames,
            kind="volume",
            source=f"series {series} {plane} {len(indices)} slices",
            sampled_indices=indices.tolist(),
        )
    index = depth // 2 if view.index is None else view.index
    if not 0 <= index < depth:
        raise ValueError(f"slice index {index} outside 0..{depth - 1} of the {plane} plane")
    pixels = plane_image(volume, plane, index=index).pixels
    return VisualItem(
        _displayed(pixels, window, invert)[None],
        kind="image",
        source=f"series {series} {plane} slice {index}",
        sampled_indices=[index],
    )


def series_files(series: str, archive_dir: Path | None = None) -> list[Path]:
    """Files of a series given as a folder (searched recursively), one file, or a Series Instance UID.

    A UID is looked up in the local archive at ``archive_dir`` (default: the app's archive).
    """
    folder = Path(series).expanduser()
    if folder.exists():
        files = expand_paths([folder])
        if not files:
            raise ValueError(f"folder {folder} holds no files")
        return files
    from dicom_net.archive import INDEX_NAME, Archive
    from dicom_net.paths import default_archive_dir

    root = Path(archive_dir) if archive_dir is not None else default_archive_dir()
    if not (root / INDEX_NAME).is_file():  # never create an archive as a side effect of a typo
        raise ValueError(f"{series!r} is neither a folder nor a series in an archive (no archive at {root})")
    with Archive(root) as archive:
        records = archive.instances(series)
    if not records:
        raise ValueError(f"{series!r} is neither a folder nor a series UID known to the archive at {root}")
    return [Path(r.path) for r in records]
