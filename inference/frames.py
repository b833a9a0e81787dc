"""What the model is shown: displayed frames as RGB uint8 visual items (image, 3D stack, video).

Inputs are numpy arrays already in display orientation: either RGB/grey uint8 as displayed, or
modality values (HU for CT) with a window (width, level) to apply here.

- 2D: the displayed frame with the current window, at full acquisition resolution (radiographs
  keep as much resolution as the token budget allows; the budget does the downsizing).
- 3D: N slices sampled uniformly from an already resliced stack, never duplicated (N is capped at
  the stack depth), shown to the model as a video without timestamps (2x2 token merging).
- Video: a multi-frame cine sampled at 1 frame/s (configurable) with "Time X.Xs:" timestamps
  taken from the recorded frame timing. A cine without frame timing gets no invented times:
  up to ``UNTIMED_VIDEO_FRAMES`` frames are sampled uniformly, the item has no timestamps and the
  prompt says that the timing is unknown and which frame numbers are shown (see
  :func:`inference.prompting.untimed_video_note`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.preprocess import VisualItem, resize_bicubic

DEFAULT_VOLUME_SLICES = 64
MAX_SEPARATE_IMAGES = 5  # report drafting: a study with more images goes in as one video
DEFAULT_VIDEO_FPS = 1.0
MAX_VIDEO_FRAMES = 128
UNTIMED_VIDEO_FRAMES = 32  # frames sampled from a cine whose frame rate is unknown


def apply_window(values: np.ndarray, width: float, level: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2.1) of modality values to uint8 0..255.

    Values at or below the window's lower edge become 0, above its upper edge 255.
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    x = np.asarray(values, dtype=np.float64)
    scaled = (
        ((x - (level - 0.5)) / (width - 1) + 0.5) * 255.0
        if width > 1
        else np.where(x > level - 0.5, 255.0, 0.0)
    )
    lower, upper = level - 0.5 - (width - 1) / 2, level - 0.5 + (width - 1) / 2
    scaled = np.where(x <= lower, 0.0, np.where(x > upper, 255.0, scaled))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb_uint8(
    frame: np.ndarray, window: tuple[float, float] | None = None, invert: bool = False
) -> np.ndarray:
    """One frame as (H, W, 3) uint8 RGB.

    ``frame`` is (H, W) grey or (H, W, 3) RGB. uint8 input is taken as displayed unless a window
    is given; any other dtype needs ``window`` = (width, level). ``invert`` flips grey levels
    (MONOCHROME1 or the viewer's invert).
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[-1] != 3):
        raise ValueError(f"a frame must be (H, W) or (H, W, 3), got shape {frame.shape}")
    if window is not None:
        grey = apply_window(frame, *window)
    elif frame.dtype == np.uint8:
        grey = frame
    else:
        raise ValueError(f"{frame.dtype} pixels need a window (width, level) to become display levels")
    if invert:
        grey = 255 - grey
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1) if grey.ndim == 2 else grey)


def image_item(
    frame: np.ndarray, window: tuple[float, float] | None = None, invert: bool = False, source: str = ""
) -> VisualItem:
    """A 2D image item from the displayed frame."""
    return VisualItem(to_rgb_uint8(frame, window, invert)[None], kind="image", source=source)


def sample_slice_indices(depth: int, count: int) -> np.ndarray:
    """``min(count, depth)`` distinct slice indices spread uniformly from first to last slice.

    Uses the reference's ``linspace`` + floor; with count <= depth the step is >= 1, so no index
    repeats.
    """
    if depth < 1 or count < 1:
        raise ValueError("depth and slice count must be >= 1")
    count = min(count, depth)
    indices = np.linspace(0, depth - 1, count).astype(np.int64)
    assert len(np.unique(indices)) == count
    return indices


def volume_item(
    stack: np.ndarray,
    slices: int = DEFAULT_VOLUME_SLICES,
    window: tuple[float, float] | None = None,
    invert: bool = False,
    per_slice_minmax: bool = False,
    source: str = "",
) -> VisualItem:
    """A 3D item: ``slices`` uniformly sampled slices of a (D, H, W[, 3]) stack, as a video.

    ``per_slice_minmax`` reproduces the reference's intensity mapping (clip to the window, then
    stretch each slice's min..max to 0..255); by default the displayed window is applied as is.
    """
    stack = np.asarray(stack)
    if stack.ndim not in (3, 4):
        raise ValueError(f"a 3D stack must be (D, H, W) or (D, H, W, 3), got shape {stack.shape}")
    indices = sample_slice_indices(stack.shape[0], slices)
    frames = np.empty((len(indices), *stack.shape[1:3], 3), dtype=np.uint8)  # filled in place: no 2nd copy
    for out, index in zip(frames, indices):
        if per_slice_minmax:
            out[...] = to_rgb_uint8(_clip_then_minmax(stack[index], window), None, invert)
        else:
            out[...] = to_rgb_uint8(stack[index], window, invert)
    return VisualItem(frames, kind="volume", source=source, sampled_indices=indices.tolist())


def _clip_then_minmax(plane: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Reference 3D intensity mapping: optional window clip, per-slice min-max to uint8 (floor)."""
    values = np.asarray(plane, dtype=np.float64)
    if window is not None:
        width, level = window
        values = np.clip(values, level - width / 2, level + width / 2)
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) / (high - low) * 255.0).astype(np.uint8)


def frame_times_from_durations_ms(frame_durations_ms: Sequence[float]) -> np.ndarray:
    """Start time (ms) of each frame from per-frame durations (Frame Time / Frame Time Vector)."""
    durations = np.asarray(frame_durations_ms, dtype=np.float64)
    if durations.ndim != 1 or len(durations) == 0 or np.any(durations <= 0):
        raise ValueError("frame durations must be a non-empty list of positive milliseconds")
    return np.concatenate([[0.0], np.cumsum(durations[:-1])])


def _start_times_s(frame_start_times_ms: Sequence[float]) -> np.ndarray:
    times = np.asarray(frame_start_times_ms, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or np.any(np.diff(times) <= 0):
        raise ValueError("frame times must be a non-empty, strictly increasing list of milliseconds")
    return (times - times[0]) / 1000.0


def sample_video_indices(
    frame_start_times_ms: Sequence[float], fps: float = DEFAULT_VIDEO_FPS, max_frames: int = MAX_VIDEO_FRAMES
) -> np.ndarray:
    """Frames shown at ``fps``: for each sampling time k/fps within the cine, the frame on screen.

    ``frame_start_times_ms`` is each frame's start time; the last frame lasts as long as the one before
    it. When more than ``max_frames`` result, ``max_frames`` of them are kept, spread uniformly.
    """
    if fps <= 0 or max_frames < 1:
        raise ValueError("fps and max_frames must be positive")
    starts = _start_times_s(frame_start_times_ms)
    duration = starts[-1] + (starts[-1] - starts[-2] if len(starts) > 1 else 0.0)
    times = np.arange(0.0, max(duration, 1e-6) - 1e-9, 1.0 / fps)
    indices = np.unique(np.searchsorted(starts, times + 1e-9, side="right") - 1)
    if len(indices) > max_frames:
        indices = indices[np.linspace(0, len(indices) - 1, max_frames).astype(np.int64)]
    return indices


def video_frame_indices(
    frame_count: int,
    frame_start_times_ms: Sequence[float] | None,
    fps: float = DEFAULT_VIDEO_FPS,
    max_frames: int = MAX_VIDEO_FRAMES,
) -> np.ndarray:
    """Indices of the frames a cine is shown with: sampled at ``fps`` from its frame timing, or,
    when the timing is unknown (None or empty), up to ``UNTIMED_VIDEO_FRAMES`` spread uniformly."""
    if frame_start_times_ms is None or len(frame_start_times_ms) == 0:
        return sample_slice_indices(frame_count, min(max_frames, UNTIMED_VIDEO_FRAMES))
    return sample_video_indices(frame_start_times_ms, fps, max_frames)


def video_item(
    frames: np.ndarray,
    frame_start_times_ms: Sequence[float] | None,
    fps: float = DEFAULT_VIDEO_FPS,
    max_frames: int = MAX_VIDEO_FRAMES,
    window: tuple[float, float] | None = None,
    invert: bool = False,
    source: str = "",
) -> VisualItem:
    """A video item from a (T, H, W[, 3]) cine sampled at ``fps``, stamped with frame start times.

    ``frame_start_times_ms`` None (or empty): the timing is unknown, see :func:`video_frame_indices`;
    the item then has no timestamps.
    """
    frames = np.asarray(frames)
    timed = frame_start_times_ms is not None and len(frame_start_times_ms) > 0
    if frames.ndim not in (3, 4) or (timed and len(frames) != len(frame_start_times_ms)):
        raise ValueError("a cine needs (T, H, W[, 3]) frames and one start time per frame")
    indices = video_frame_indices(len(frames), frame_start_times_ms, fps, max_frames)
    starts = _start_times_s(frame_start_times_ms) if timed else None
    sampled = np.empty((len(indices), *frames.shape[1:3], 3), dtype=np.uint8)
    for out, i in zip(sampled, indices):
        out[...] = to_rgb_uint8(frames[i], window, invert)
    return VisualItem(
        sampled,
        kind="video",
        timestamps_s=None if starts is None else [float(starts[i]) for i in indices],
        source=source,
        sampled_indices=indices.tolist(),
    )


def study_items(frames: Sequence[np.ndarray], source: str = "") -> list[VisualItem]:
    """A study's displayed images for report drafting, as the authors evaluated reports.

    Up to ``MAX_SEPARATE_IMAGES`` frames become separate image items; more become one video-like
    item without timestamps (2x2 merging), every frame resized (bicubic) to the first one's size.
    Frames are display uint8, grey or RGB.
    """
    rgb = [to_rgb_uint8(frame) for frame in frames]
    if not rgb:
        raise ValueError("a study needs at least one image")
    if len(rgb) <= MAX_SEPARATE_IMAGES:
        return [VisualItem(frame[None], kind="image", source=source) for frame in rgb]
    height, width = rgb[0].shape[:2]
    stack = np.stack([resize_bicubic(frame, height, width) for frame in rgb])
    return [VisualItem(stack, kind="volume", source=source, sampled_indices=list(range(len(rgb))))]
