"""Glue from what the viewer shows to what Hulu-Med sees: a Volume + view settings -> a VisualItem.

Used by the ``ask`` command, the chat panel and report drafting. Every image comes from
``viewer.view_state.displayed_image``, the function the 2D views render from: the same plane
(standard, oblique or the native acquisition), slab, window, inversion and on-screen orientation
(flips, quarter turns) as the view; :mod:`inference.frames` turns it into model frames. Zoom and
pan are not applied: the model gets the whole plane at full resolution.

Modes: ``2d`` the current slice/frame; ``3d`` N slices sampled uniformly through the whole
stack in the chosen plane (no duplicates); ``video`` a cine sampled at ``fps`` with timestamps,
or, without frame timing, frames spread uniformly and labelled by number (timing unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from hulu_common.files import expand_paths
from inference.frames import (
    DEFAULT_VIDEO_FPS,
    DEFAULT_VOLUME_SLICES,
    MAX_VIDEO_FRAMES,
    sample_slice_indices,
    to_rgb_uint8,
    video_item,
)
from inference.preprocess import VisualItem
from viewer.cine import cine_start_times_ms
from viewer.presets import default_window
from viewer.reslice import Plane, plane_positions, value_range
from viewer.view_state import DisplayedImage, ViewState, displayed_image
from viewer.volume import Volume

AIMode = Literal["auto", "2d", "3d", "video"]
AI_MODES: tuple[str, ...] = ("auto", "2d", "3d", "video")


@dataclass
class AIView:
    """What to show the model. ``None`` means "as the viewer would open the series"."""

    mode: AIMode = "auto"
    plane: Plane | None = None  # axial/coronal/sagittal/native or an Oblique; None: axial, else native
    index: int | None = None  # 2D: slice (or cine frame) index in the plane; None: the middle one
    slices: int = DEFAULT_VOLUME_SLICES  # 3D: slices sampled through the stack
    window: float | None = None
    level: float | None = None
    invert: bool | None = None  # None: MONOCHROME1 images are inverted, as displayed
    fps: float = DEFAULT_VIDEO_FPS
    max_frames: int = MAX_VIDEO_FRAMES
    position_mm: float | None = None  # 2D: the exact position shown (MPR crosshair), over ``index``
    slab_mm: float = 0.0
    slab_mode: str = "mip"
    display: tuple[tuple[float, float], tuple[float, float]] | None = None  # on-screen flips/turns

    @classmethod
    def from_view_state(
        cls, state: ViewState, mode: AIMode = "2d", slices: int = DEFAULT_VOLUME_SLICES
    ) -> AIView:
        """What a 2D view currently shows: plane, slice or position, slab, window, invert and
        orientation (not zoom/pan)."""
        m = state.display_matrix()
        return cls(
            mode=mode,
            plane=state.geometry,
            index=state.slice_index,
            slices=slices,
            window=state.window_width,
            level=state.window_center,
            invert=state.invert,
            position_mm=state.position_mm,
            slab_mm=state.slab_mm,
            slab_mode=state.slab_mode,
            display=((float(m[0, 0]), float(m[0, 1])), (float(m[1, 0]), float(m[1, 1]))),
        )


def is_cine(volume: Volume) -> bool:
    """A multi-frame acquisition in time (ultrasound, XA) rather than a stack in space."""
    return bool(volume.frame_start_times_ms) and not volume.metadata.get("has_patient_geometry", True)


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


def resolve_plane(volume: Volume, view: AIView) -> Plane:
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


def plane_name(plane: Plane) -> str:
    return plane if isinstance(plane, str) else "oblique"


def view_state_for(volume: Volume, view: AIView) -> ViewState:
    """The 2D view state ``view`` describes (what a view showing it would hold)."""
    state = ViewState()
    plane = resolve_plane(volume, view)
    depth = len(plane_positions(volume, plane))
    state.set_geometry(plane, depth, view.position_mm)
    index = depth // 2 if view.index is None else view.index
    if view.position_mm is None and not 0 <= index < depth:
        raise ValueError(f"slice index {index} outside 0..{depth - 1} of the {plane_name(plane)} plane")
    state.slice_index = min(max(index, 0), depth - 1)
    state.slab_mm, state.slab_mode = float(view.slab_mm), view.slab_mode  # type: ignore[assignment]
    window = resolve_window(volume, view)
    if window is not None:
        state.window_width, state.window_center = window
    state.invert = bool(volume.metadata.get("invert", False)) if view.invert is None else view.invert
    if view.display is not None:
        state.set_display_matrix(np.asarray(view.display, dtype=np.float64))
    return state


def shown_image(volume: Volume, view: AIView) -> DisplayedImage:
    """The image a 2D view set as ``view`` says shows (``viewer.view_state.displayed_image``)."""
    return displayed_image(volume, view_state_for(volume, view))


def visual_item_for(volume: Volume, view: AIView | None = None) -> VisualItem:
    """The model input for ``volume`` shown as ``view`` says (see the module docstring)."""
    view = view or AIView()
    mode = resolve_mode(volume, view)
    series = str(volume.metadata.get("series_uid", ""))
    if mode == "video":
        window = resolve_window(volume, view)
        invert = bool(volume.metadata.get("invert", False)) if view.invert is None else view.invert
        # No frame timing: no invented times (video_item labels the frames by number instead).
        # video_item windows only the frames it samples (same DICOM formula as the display).
        return video_item(
            volume.voxels,
            cine_start_times_ms(volume),
            fps=view.fps,
            max_frames=view.max_frames,
            window=window,
            invert=invert,
            source=f"series {series} cine",
        )
    state = view_state_for(volume, view)
    name = plane_name(state.geometry)
    if mode == "3d":
        indices = sample_slice_indices(state.slice_count, view.slices)
        state.position_mm = None
        state.slice_index = int(indices[0])
        first = to_rgb_uint8(displayed_image(volume, state).on_screen())
        frames = np.empty((len(indices), *first.shape), dtype=first.dtype)
        frames[0] = first
        for out, i in zip(frames[1:], indices[1:]):
            state.slice_index = int(i)
            out[...] = to_rgb_uint8(displayed_image(volume, state).on_screen())
        return VisualItem(
            frames,
            kind="volume",
            source=f"series {series} {name} {len(indices)} slices",
            sampled_indices=indices.tolist(),
        )
    shown = displayed_image(volume, state)
    return VisualItem(
        to_rgb_uint8(shown.on_screen())[None],
        kind="image",
        source=f"series {series} {name} slice {state.slice_index}",
        sampled_indices=[state.slice_index],
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
