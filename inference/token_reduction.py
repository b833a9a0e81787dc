"""Inter-frame visual token reduction for video and 3D items (off unless asked for).

A merged token covers one ``m x m`` block of patches. For frame t >= 1 of a video/3D item it is
dropped when the mean absolute difference of its normalised pixels (range [-1, 1]) against the
same block of frame t-1 is <= ``threshold``. Dropped tokens lose their ``<image>`` ids too, so
this saves LLM prefill and KV cache, not vision-encoder compute. Images and single-frame items are
never reduced.

Modes:
- ``"off"`` (default): nothing dropped.
- ``"intended"``: the rule Hulu-Med describes; frame 0 kept whole; every later frame keeps at
  least ``min_tokens_per_frame`` tokens (its first ones), as in the reference.
- ``"reference"``: bit-for-bit the released code's mask, including its bug (frame 0's "always
  keep" value is divided by 255, so frame 0 keeps only its first token). For parity tests only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ReductionMode = Literal["off", "intended", "reference"]
REDUCTION_MODES: tuple[str, ...] = ("off", "intended", "reference")
DEFAULT_THRESHOLD = 0.1


@dataclass
class Reduction:
    """Which merged tokens survive. ``mask``: (visual_tokens,) bool in model order, or None when
    nothing is reduced. ``frame_tokens``: surviving tokens per frame, per item."""

    mask: np.ndarray | None
    frame_tokens: list[list[int]]

    @property
    def kept(self) -> int:
        return sum(sum(tokens) for tokens in self.frame_tokens)


def _item_mask(
    block_pixels: np.ndarray, mode: ReductionMode, threshold: float, min_tokens_per_frame: int
) -> np.ndarray:
    """(t, tokens) keep-mask for one multi-frame item; ``block_pixels`` is (t, tokens, values)."""
    diff = np.abs(block_pixels[1:] - block_pixels[:-1]).mean(axis=-1, dtype=np.float32)
    if mode == "reference":
        diff = diff * 255
        first = np.full_like(diff[:1], threshold + 1)
        mask = (np.concatenate([first, diff]) / 255.0) > threshold
    else:
        mask = np.concatenate([np.ones_like(diff[:1], dtype=bool), diff > threshold])
    starved = mask.sum(axis=1) < min_tokens_per_frame
    mask[starved, :min_tokens_per_frame] = True
    return mask


def reduce_tokens(
    pixel_values: np.ndarray,
    grid_thw: np.ndarray,
    merge_sizes: np.ndarray,
    frame_tokens: list[list[int]],
    kinds: list[str],
    mode: ReductionMode = "off",
    threshold: float = DEFAULT_THRESHOLD,
    min_tokens_per_frame: int = 1,
) -> Reduction:
    """The keep-mask over all merged tokens of a call (items in order, frames in order)."""
    if mode not in REDUCTION_MODES:
        raise ValueError(f"token reduction mode must be one of {REDUCTION_MODES}, not {mode!r}")
    if mode == "off":
        return Reduction(mask=None, frame_tokens=[list(tokens) for tokens in frame_tokens])
    masks: list[np.ndarray] = []
    kept: list[list[int]] = []
    offset = 0
    for (t, h, w), merge, kind in zip(grid_thw.tolist(), merge_sizes.tolist(), kinds):
        patches = t * h * w
        tokens = (h // merge) * (w // merge)
        if kind == "image" or t == 1:
            masks.append(np.ones(t * tokens, dtype=bool))
            kept.append([tokens] * t)
        else:
            item = pixel_values[offset : offset + patches].reshape(t, tokens, -1)
            mask = _item_mask(item, mode, threshold, min_tokens_per_frame)
            masks.append(mask.reshape(-1))
            kept.append(mask.sum(axis=1).astype(int).tolist())
        offset += patches
    return Reduction(mask=np.concatenate(masks), frame_tokens=kept)
