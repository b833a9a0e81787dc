"""Inter-frame token reduction: off by default, the intended rule on request, reference mask for parity."""

from __future__ import annotations

import numpy as np
import pytest

from inference.preprocess import VisualItem, preprocess_items
from inference.token_reduction import reduce_tokens

# 3 frames of 56x56 with min_tokens=1: 4x4 patches -> 2x2 merged tokens per frame (28x28 pixel blocks)


def _video(frames: np.ndarray, kind: str = "volume") -> tuple[VisualItem, object]:
    item = VisualItem(frames, kind=kind)  # type: ignore[arg-type]
    return item, preprocess_items([item], min_tokens=1)


def _reduce(visuals, kinds, mode, **kwargs):
    return reduce_tokens(
        visuals.pixel_values,
        visuals.grid_thw,
        visuals.merge_sizes,
        visuals.frame_tokens,
        kinds,
        mode=mode,
        **kwargs,
    )


def _frames() -> np.ndarray:
    """Frame 1 changes block (0,0) strongly and block (1,1) slightly; frame 2 repeats frame 1."""
    base = np.full((56, 56, 3), 100, dtype=np.uint8)
    f1 = base.copy()
    f1[:28, :28] = 160  # |diff| = 60 levels = 0.47 normalised: kept
    f1[28:, 28:] = 110  # 10 levels = 0.078 normalised: <= 0.1, dropped
    return np.stack([base, f1, f1.copy()])


def test_reduction_is_off_by_default() -> None:
    item, visuals = _video(_frames())
    result = reduce_tokens(
        visuals.pixel_values, visuals.grid_thw, visuals.merge_sizes, visuals.frame_tokens, [item.kind]
    )
    assert result.mask is None and result.frame_tokens == [[4, 4, 4]] and result.kept == 12


def test_intended_rule_keeps_frame_zero_and_changed_blocks_only() -> None:
    item, visuals = _video(_frames())
    result = _reduce(visuals, [item.kind], "intended")
    assert result.mask.tolist() == [True] * 4 + [True, False, False, False] + [True, False, False, False]
    # frame 2 equals frame 1: nothing changed, but every frame keeps its first token (as the reference)
    assert result.frame_tokens == [[4, 1, 1]] and result.kept == 6


def test_changed_block_survives_even_when_it_is_not_first() -> None:
    frames = _frames()
    frames[1] = frames[0]
    frames[1, 28:, 28:] = 0  # block (1,1): 100 levels
    frames[2] = frames[1]
    item, visuals = _video(frames)
    result = _reduce(visuals, [item.kind], "intended", min_tokens_per_frame=0)
    assert result.mask.reshape(3, 4).tolist() == [[True] * 4, [False, False, False, True], [False] * 4]
    assert result.frame_tokens == [[4, 1, 0]]


def test_threshold_boundary_is_inclusive_drop() -> None:
    item, visuals = _video(_frames())
    lenient = _reduce(visuals, [item.kind], "intended", threshold=0.5)  # 0.47 <= 0.5: dropped too
    assert lenient.frame_tokens == [[4, 1, 1]]
    assert lenient.mask.reshape(3, 4)[1].tolist() == [True, False, False, False]  # kept only as first token
    strict = _reduce(visuals, [item.kind], "intended", threshold=0.05)  # 0.078 > 0.05: kept
    assert strict.mask.reshape(3, 4)[1].tolist() == [True, False, False, True]


def test_reference_mode_reproduces_frame_zero_bug() -> None:
    item, visuals = _video(_frames())
    result = _reduce(visuals, [item.kind], "reference")
    # frame 0's keep value (0.1 + 1) is divided by 255, so only its first token survives
    assert result.mask.reshape(3, 4).tolist() == [
        [True, False, False, False],
        [True, False, False, False],
        [True, False, False, False],
    ]


def test_images_and_single_frames_are_never_reduced() -> None:
    image = VisualItem(np.full((56, 56, 3), 100, dtype=np.uint8))
    volume = VisualItem(_frames(), kind="volume")
    single = VisualItem(_frames()[:1], kind="video")
    visuals = preprocess_items([image, volume, single], min_tokens=1)
    result = _reduce(visuals, ["image", "volume", "video"], "intended")
    assert result.frame_tokens == [[4], [4, 1, 1], [4]]
    assert result.mask.shape == (visuals.visual_tokens,) and result.kept == 14


def test_unknown_mode_is_rejected() -> None:
    item, visuals = _video(_frames())
    with pytest.raises(ValueError, match="mode"):
        _reduce(visuals, [item.kind], "aggressive")
