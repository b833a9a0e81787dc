"""Hulu-Med preprocessing: token budget arithmetic, exact pixel values and patch order."""

from __future__ import annotations

import numpy as np
import pytest

from inference.preprocess import NORMALISED_LEVELS, VisualItem, patchify, preprocess_items
from inference.preprocess_budget import target_size, tokens_per_frame


def _norm(level: np.ndarray | int) -> np.ndarray:
    """Hand formula: v / 255 rescaled, then (x - 0.5) / 0.5."""
    return (np.asarray(level, dtype=np.float64) / 255.0 - 0.5) / 0.5


@pytest.mark.parametrize(
    ("size", "frames", "merge", "expected_tokens"),
    [
        (512, 1, 1, 1369),  # 37 x 37: round(512 / 14) = 37
        (1024, 1, 1, 5329),  # 73 x 73
        (512, 180, 2, 14580),  # 180 slices x 9 x 9 merged tokens
        (512, 64, 2, 16384),  # 64 slices x 16 x 16: exactly the budget
        (512, 32, 2, 10368),  # 32 slices x 18 x 18
    ],
)
def test_token_counts_match_reference_figures(
    size: int, frames: int, merge: int, expected_tokens: int
) -> None:
    h, w = target_size(size, size, merge_size=merge, frame_count=frames)
    assert h % (14 * merge) == 0 and w % (14 * merge) == 0
    assert frames * tokens_per_frame(h, w, merge) == expected_tokens


def test_tiny_image_is_raised_to_min_tokens() -> None:
    # 20x20 -> 14x14 = 1 token < 16: scaled up so that at least 16 tokens (4 x 4 patches) result
    assert target_size(20, 20, merge_size=1, frame_count=1) == (56, 56)


def test_non_square_keeps_height_and_width_apart() -> None:
    h, w = target_size(300, 700, merge_size=1, frame_count=1)
    assert (h, w) == (294, 700)  # round(300/14)=21 -> 294, round(700/14)=50 -> 700; never transposed


def test_budget_is_shared_by_all_frames_of_a_call() -> None:
    big = np.zeros((2048, 2048, 3), dtype=np.uint8)
    alone = preprocess_items([VisualItem(big)])
    pair = preprocess_items([VisualItem(big), VisualItem(big)])
    assert alone.visual_tokens <= 16384 and alone.visual_tokens > 16000
    assert pair.visual_tokens <= 16384
    assert pair.frame_tokens[0] == pair.frame_tokens[1]
    assert pair.frame_tokens[0][0] <= 8192 < alone.frame_tokens[0][0]


def test_any_volume_switches_every_item_to_merge_two() -> None:
    image = VisualItem(np.zeros((512, 512, 3), dtype=np.uint8))
    volume = VisualItem(np.zeros((31, 512, 512, 3), dtype=np.uint8), kind="volume")
    out = preprocess_items([image, volume])
    assert out.merge_sizes.tolist() == [2, 2]
    # 32 frames share the budget: every frame, the image included, gets 18 x 18 merged tokens
    assert out.grid_thw.tolist() == [[1, 36, 36], [31, 36, 36]]
    assert out.visual_tokens == 32 * 324 == 10368
    only_image = preprocess_items([image])
    assert only_image.merge_sizes.tolist() == [1] and only_image.visual_tokens == 1369


def test_hand_computed_patch_values_merge_one() -> None:
    # 56x56 (16 tokens, no resize): R encodes the column, G the row, B is constant
    yy, xx = np.mgrid[0:56, 0:56]
    image = np.stack([xx * 4, yy * 4, np.full_like(xx, 200)], axis=-1).astype(np.uint8)
    out = preprocess_items([VisualItem(image)])
    assert out.grid_thw.tolist() == [[1, 4, 4]] and out.pixel_values.shape == (16, 588)
    patch = out.pixel_values[6].reshape(3, 14, 14)  # merge 1: row-major, patch row 1, patch column 2
    rows, cols = np.mgrid[14:28, 28:42]
    np.testing.assert_allclose(patch[0], _norm(cols * 4), atol=1e-6)
    np.testing.assert_allclose(patch[1], _norm(rows * 4), atol=1e-6)
    np.testing.assert_allclose(patch[2], _norm(200), atol=1e-6)
    assert patch[0, 0, 0] == pytest.approx(2 * 112 / 255 - 1, abs=1e-6)


def test_hand_computed_patch_order_merge_two() -> None:
    # two 56x56 frames; min_tokens=1 keeps the size, so each frame is 4x4 patches = 2x2 merge blocks
    yy, xx = np.mgrid[0:56, 0:56]
    frame0 = np.stack([xx * 4, yy * 4, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    frame1 = frame0.copy()
    frame1[..., 2] = 50
    out = preprocess_items([VisualItem(np.stack([frame0, frame1]), kind="volume")], min_tokens=1)
    assert out.grid_thw.tolist() == [[2, 4, 4]] and out.frame_tokens == [[4, 4]]
    # block (0,1) of frame 0 holds patches (0,2), (0,3), (1,2), (1,3) at rows 4..7
    expected = [(0, 2), (0, 3), (1, 2), (1, 3)]
    for offset, (pr, pc) in enumerate(expected):
        patch = out.pixel_values[4 + offset].reshape(3, 14, 14)
        assert patch[0, 0, 0] == pytest.approx(_norm(pc * 14 * 4), abs=1e-6)
        assert patch[1, 0, 0] == pytest.approx(_norm(pr * 14 * 4), abs=1e-6)
    # frame 1 starts after 16 patches; its blue channel is 50 everywhere
    np.testing.assert_allclose(out.pixel_values[16:].reshape(16, 3, 196)[:, 2], _norm(50), atol=1e-6)
    np.testing.assert_allclose(out.pixel_values[:16].reshape(16, 3, 196)[:, 2], -1.0, atol=1e-6)


def test_patchify_rejects_sizes_not_multiple_of_merge_block() -> None:
    with pytest.raises(ValueError, match="multiple"):
        patchify(np.zeros((1, 42, 56, 3), dtype=np.float32), merge_size=2)


def test_normalised_levels_cover_minus_one_to_one() -> None:
    assert NORMALISED_LEVELS[0] == -1.0 and NORMALISED_LEVELS[255] == 1.0
    assert NORMALISED_LEVELS.dtype == np.float32


@pytest.mark.parametrize("shape", [(512, 512), (300, 700), (1100, 900), (40, 30)])
def test_pixel_values_bit_identical_to_transformers_image_processor(shape: tuple[int, int]) -> None:
    from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import (
        VideoLlama3ImageProcessorPil,
    )

    image = np.random.default_rng(7).integers(0, 256, (*shape, 3), dtype=np.uint8)
    native = VideoLlama3ImageProcessorPil(
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        patch_size=14,
        merge_size=1,
        min_pixels=16 * 14 * 14,
        max_pixels=16384 * 14 * 14,
    )(images=[image], return_tensors="np")
    ours = preprocess_items([VisualItem(image)])
    assert ours.grid_thw.tolist() == native["image_grid_thw"].tolist()
    assert ours.pixel_values.dtype == native["pixel_values"].dtype == np.float32
    assert np.array_equal(ours.pixel_values, native["pixel_values"])


@pytest.mark.parametrize(
    ("frames", "kind", "message"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "image", "uint8"),
        (np.zeros((8, 8), dtype=np.uint8), "image", "RGB"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "image", "exactly one frame"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "volume", "at least one frame"),
    ],
)
def test_bad_frames_get_a_clear_error(frames: np.ndarray, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisualItem(frames, kind=kind)  # type: ignore[arg-type]


def test_a_large_3d_item_needs_little_more_than_its_output_memory() -> None:
    """180 slices (the reference 3D default) fill one float32 array in place: no float copy of the
    whole stack and no concatenation copy (peak was 2.25x the output before)."""
    import tracemalloc

    frames = np.random.default_rng(0).integers(0, 256, size=(180, 256, 256, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        out = preprocess_items([VisualItem(frames, kind="volume")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.pixel_values.shape == (180 * 18 * 18, 588)  # 252x252 per slice under the shared budget
    assert peak < 1.6 * out.pixel_values.nbytes
