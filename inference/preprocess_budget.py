"""Hulu-Med's visual token budget: how large each image/frame is resized before patching.

The reference image processor (``simple_batched_resize``) spreads ONE budget of ``max_tokens`` LLM
tokens over every image and frame of a call: with ``factor = patch_size * merge_size``,
``max_pixels = max_tokens * factor**2`` and each frame may use ``max_pixels // frame_count``
pixels. A frame first snaps to the nearest multiple of ``factor`` (Python ``round``); if that is
over its share it is scaled by ``beta = sqrt(h * w / share)`` and floored to multiples of
``factor``; if it is under ``min_tokens * factor**2`` it is scaled up and ceiled. Reproduced here
with the same float arithmetic so the sizes match the reference exactly. Unlike the reference's
PIL path, height and width are never swapped.
"""

from __future__ import annotations

import math

PATCH_SIZE = 14
MAX_TOKENS = 16384
MIN_TOKENS = 16


def merge_size_for(has_video_or_volume: bool) -> int:
    """2x2 token merging for every item of a call that holds a video or 3D stack, else none."""
    return 2 if has_video_or_volume else 1


def target_size(
    height: int,
    width: int,
    *,
    merge_size: int,
    frame_count: int,
    max_tokens: int = MAX_TOKENS,
    min_tokens: int = MIN_TOKENS,
    patch_size: int = PATCH_SIZE,
) -> tuple[int, int]:
    """(height, width) in pixels, multiples of ``patch_size * merge_size``, for one frame.

    ``frame_count`` is the number of frames of ALL items of the call (1 per image, T per video or
    3D stack): they share the budget equally.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1 pixel, got {height}x{width}")
    if frame_count < 1:
        raise ValueError("frame_count must be >= 1")
    factor = patch_size * merge_size
    max_pixels = max_tokens * factor * factor
    min_pixels = min_tokens * factor * factor
    share = max_pixels // frame_count
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > share:
        beta = math.sqrt((height * width) / share)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def tokens_per_frame(height: int, width: int, merge_size: int, patch_size: int = PATCH_SIZE) -> int:
    """LLM tokens one frame of the given resized size becomes: (h/p/m) * (w/p/m)."""
    return (height // patch_size // merge_size) * (width // patch_size // merge_size)
