"""Pixels -> Hulu-Med vision-encoder input, reproducing the reference image processor.

Per frame: RGB uint8 -> bicubic resize (Pillow, as the reference does through transformers) to the
size chosen by :mod:`inference.preprocess_budget` -> rescale 1/255 (float64, then float32) ->
normalise with mean = std = 0.5 (float32) -> 14x14 patches ordered so that the
``merge_size x merge_size`` patches of one merge block are contiguous, each patch flattened
channel-first to 3*14*14 values. This is bit-identical to the reference for numpy input.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from inference.preprocess_budget import MAX_TOKENS, MIN_TOKENS, PATCH_SIZE, merge_size_for, target_size

ItemKind = Literal["image", "video", "volume"]

# uint8 level -> normalised float32, computed exactly as the reference does it
# ((v * (1/255)) in float64, cast to float32, then (x - 0.5) / 0.5 in float32).
_RESCALED = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
NORMALISED_LEVELS = (_RESCALED - np.float32(0.5)) / np.float32(0.5)
_LOOKUP_ROWS = 4096  # patches normalised per step (~10 MB of float32 at 14x14x3)


@dataclass
class VisualItem:
    """One image, video or 3D stack as the model will see it.

    ``frames``: (T, H, W, 3) uint8 RGB, T = 1 for an image. ``timestamps_s``: one start time per
    frame for real video (printed as "Time X.Xs:" in the prompt), None otherwise. ``source``: free
    text for logs and the UI (series UID, plane ...), never patient data.
    """

    frames: np.ndarray
    kind: ItemKind = "image"
    timestamps_s: list[float] | None = None
    source: str = ""
    sampled_indices: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.ndim == 3 and self.kind == "image":
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8 RGB, got shape {frames.shape} dtype {frames.dtype}"
            )
        if frames.shape[0] < 1:
            raise ValueError("a visual item needs at least one frame")
        if self.kind == "image" and frames.shape[0] != 1:
            raise ValueError("an image item has exactly one frame")
        if self.timestamps_s is not None and len(self.timestamps_s) != frames.shape[0]:
            raise ValueError("one timestamp per frame is required")
        self.frames = frames

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class PreprocessedVisuals:
    """All visual items of one call, ready for the vision encoder.

    ``pixel_values``: (num_patches, 3*14*14) float32. ``grid_thw``: (items, 3) patch grid per item.
    ``merge_sizes``: (items,). ``frame_tokens``: per item, the LLM tokens of each of its frames.
    ``resized``: per item, the (height, width) its frames were resized to.
    """

    pixel_values: np.ndarray
    grid_thw: np.ndarray
    merge_sizes: np.ndarray
    frame_tokens: list[list[int]]
    resized: list[tuple[int, int]]

    @property
    def visual_tokens(self) -> int:
        return sum(sum(tokens) for tokens in self.frame_tokens)

    @property
    def frames(self) -> int:
        return sum(len(tokens) for tokens in self.frame_tokens)


def resize_bicubic(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 frame with Pillow's bicubic filter (antialiased when shrinking)."""
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize every frame of a (T, H, W, 3) uint8 stack; Pillow frees the GIL, so frames run in parallel."""
    if len(frames) < 8:
        return np.stack([resize_bicubic(frame, height, width) for frame in frames])
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(lambda frame: resize_bicubic(frame, height, width), frames)))


def patchify(frames: np.ndarray, merge_size: int, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """(T, H, W, 3) -> (T*gh*gw, 3*p*p) with each merge block's m*m patches contiguous (any dtype).

    Order: frame, merged row, merged column, row within block, column within block; inside a
    patch: channel, pixel row, pixel column.
    """
    t, height, width, channels = frames.shape
    gh, gw = height // patch_size, width // patch_size
    if gh * patch_size != height or gw * patch_size != width or gh % merge_size or gw % merge_size:
        raise ValueError(f"{height}x{width} is not a multiple of patch {patch_size} x merge {merge_size}")
    blocks = frames.reshape(
        t, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size, channels
    )
    # axes: t, bh, mh, ph, bw, mw, pw, c -> t, bh, bw, mh, mw, c, ph, pw
    blocks = blocks.transpose(0, 1, 4, 2, 5, 7, 3, 6)
    return np.ascontiguousarray(blocks).reshape(t * gh * gw, channels * patch_size * patch_size)


def preprocess_items(
    items: list[VisualItem],
    *,
    max_tokens: int = MAX_TOKENS,
    min_tokens: int = MIN_TOKENS,
    patch_size: int = PATCH_SIZE,
) -> PreprocessedVisuals:
    """Resize, normalise and patch every item of one call under one shared token budget."""
    if not items:
        raise ValueError("no visual items to preprocess")
    merge = merge_size_for(any(item.kind != "image" for item in items))
    frame_count = sum(item.frame_count for item in items)
    resized = [
        target_size(
            *item.frames.shape[1:3],
            merge_size=merge,
            frame_count=frame_count,
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            patch_size=patch_size,
        )
        for item in items
    ]
    grid_thw = [(item.frame_count, h // patch_size, w // patch_size) for item, (h, w) in zip(items, resized)]
    frame_tokens = [[(gh // merge) * (gw // merge)] * t for t, gh, gw in grid_thw]
    # One float32 output written item by item: peak memory is the output plus one item's uint8
    # levels, not a float copy per item plus their concatenation.
    pixel_values = np.empty(
        (sum(t * gh * gw for t, gh, gw in grid_thw), 3 * patch_size * patch_size),
        dtype=NORMALISED_LEVELS.dtype,
    )
    start = 0
    for item, (new_h, new_w) in zip(items, resized):
        # patch the uint8 levels (1 byte per value), then look the normalised floats up in place
        patches = patchify(resize_frames(item.frames, new_h, new_w), merge, patch_size)
        for first in range(0, len(patches), _LOOKUP_ROWS):  # bounded float temporaries
            rows = patches[first : first + _LOOKUP_ROWS]
            pixel_values[start + first : start + first + len(rows)] = NORMALISED_LEVELS[rows]
        start += len(patches)
    return PreprocessedVisuals(
        pixel_values=pixel_values,
        grid_thw=np.asarray(grid_thw, dtype=np.int64),
        merge_sizes=np.full(len(items), merge, dtype=np.int64),
        frame_tokens=frame_tokens,
        resized=resized,
    )
