"""Frames shown to the model: window/level, 3D slice sampling, cine sampling with timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from inference.frames import (
    apply_window,
    frame_times_from_durations_ms,
    image_item,
    sample_slice_indices,
    sample_video_indices,
    study_items,
    to_rgb_uint8,
    video_frame_indices,
    video_item,
    volume_item,
)


def test_window_clips_below_and_above_and_maps_level_to_mid_grey() -> None:
    hu = np.array([-1000, -161, -160, 40, 239, 240, 3000], dtype=np.int16)
    out = apply_window(hu, 400, 40)  # soft-tissue window: -160 .. 240 HU
    assert out.dtype == np.uint8
    assert out[0] == 0 and out[1] == 0 and out[2] == 0
    assert out[-1] == 255 and out[-2] == 255
    assert out[3] == 128  # ((40 - 39.5) / 399 + 0.5) * 255 = 127.8
    assert out[4] == 255  # 239 HU is the top of the window: ((239 - 39.5) / 399 + 0.5) * 255 = 255


def test_window_is_monotonic_inside_the_window() -> None:
    values = np.arange(-160, 241)
    out = apply_window(values, 400, 40).astype(int)
    assert np.all(np.diff(out) >= 0) and out[0] == 0 and out[-1] == 255


def test_modality_values_need_a_window() -> None:
    with pytest.raises(ValueError, match="window"):
        to_rgb_uint8(np.zeros((4, 4), dtype=np.int16))


def test_grey_frame_becomes_rgb_and_invert_flips() -> None:
    grey = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    rgb = to_rgb_uint8(grey)
    assert rgb.shape == (2, 2, 3) and np.array_equal(rgb[..., 1], grey)
    assert np.array_equal(to_rgb_uint8(grey, invert=True)[..., 0], 255 - grey)


def test_image_item_keeps_full_resolution_of_a_radiograph() -> None:
    cxr = np.random.default_rng(1).integers(0, 4096, (2500, 2048), dtype=np.uint16)
    item = image_item(cxr, window=(4096, 2048))
    assert item.kind == "image" and item.frames.shape == (1, 2500, 2048, 3)


@pytest.mark.parametrize(("depth", "count"), [(180, 64), (100, 100), (65, 64), (2, 1)])
def test_slice_sampling_is_uniform_without_duplicates(depth: int, count: int) -> None:
    idx = sample_slice_indices(depth, count)
    assert len(idx) == count and len(set(idx.tolist())) == count
    assert idx[0] == 0 and (count == 1 or idx[-1] == depth - 1)
    assert np.all(np.diff(idx) >= 1)


def test_slice_count_is_capped_at_stack_depth() -> None:
    idx = sample_slice_indices(40, 180)
    assert idx.tolist() == list(range(40))


def test_volume_item_takes_the_sampled_slices_windowed() -> None:
    # slice k holds HU = 10 * k everywhere; window 0..1000 HU maps 10 HU to ~2.55 levels
    stack = (np.arange(101, dtype=np.int16) * 10)[:, None, None] * np.ones((1, 8, 8), dtype=np.int16)
    item = volume_item(stack, slices=5, window=(1001, 500))
    assert item.kind == "volume" and item.timestamps_s is None
    assert item.sampled_indices == [0, 25, 50, 75, 100]
    expected = apply_window(np.array([0, 250, 500, 750, 1000]), 1001, 500)
    assert item.frames[:, 3, 3, 0].tolist() == expected.tolist()
    assert expected.tolist() == [0, 64, 128, 191, 255]


def test_volume_reference_intensity_is_per_slice_minmax_after_clip() -> None:
    plane = np.array([[-1000, 0], [50, 2000]], dtype=np.int16)
    item = volume_item(plane[None], slices=1, window=(400, 40), per_slice_minmax=True)
    # clipped to [-160, 240], then stretched: -160 -> 0, 0 -> 102, 50 -> 133, 240 -> 255 (floor)
    assert item.frames[0, ..., 0].tolist() == [[0, 102], [133, 255]]


def test_frame_start_times_from_frame_durations() -> None:
    assert frame_times_from_durations_ms([40, 40, 60, 60]).tolist() == pytest.approx([0.0, 40.0, 80.0, 140.0])


def test_cine_sampled_at_one_frame_per_second_with_timestamps() -> None:
    frames = np.zeros((120, 8, 8, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(120)
    item = video_item(frames, np.arange(120) * 40.0)  # 25 frames/s, 4.8 s
    assert item.kind == "video"
    assert item.sampled_indices == [0, 25, 50, 75, 100]
    assert item.timestamps_s == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    assert item.frames[:, 0, 0, 0].tolist() == [0, 25, 50, 75, 100]


def test_cine_sampling_follows_variable_frame_time_vector() -> None:
    durations = [100.0] * 10 + [500.0] * 4  # 1 s of fast frames then 2 s of slow ones
    times = frame_times_from_durations_ms(durations)
    idx = sample_video_indices(times, fps=1.0)
    assert idx.tolist() == [0, 10, 12]  # t=0 -> frame 0, t=1.0 -> frame 10, t=2.0 -> frame 12
    fast = sample_video_indices(times, fps=2.0)
    assert fast.tolist() == [0, 5, 10, 11, 12, 13]


def test_cine_sampling_is_capped_at_max_frames() -> None:
    idx = sample_video_indices(np.arange(300) * 1000.0, fps=1.0, max_frames=128)
    assert len(idx) == 128 and idx[0] == 0 and idx[-1] == 299 and len(set(idx.tolist())) == 128


def test_bad_cine_timing_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        frame_times_from_durations_ms([40.0, 0.0])
    with pytest.raises(ValueError, match="increasing"):
        sample_video_indices([0.0, 40.0, 40.0])
    with pytest.raises(ValueError, match="one start time per frame"):
        video_item(np.zeros((3, 4, 4), dtype=np.uint8), [0.0, 40.0])


def test_cine_timestamps_count_from_the_first_frame() -> None:
    item = video_item(np.zeros((3, 4, 4), dtype=np.uint8), [5000.0, 5500.0, 6000.0])
    assert item.sampled_indices == [0, 2] and item.timestamps_s == pytest.approx([0.0, 1.0])


def test_cine_without_timing_gets_no_invented_times() -> None:
    frames = np.zeros((120, 8, 8), dtype=np.uint8)
    frames[:, 0, 0] = np.arange(120)
    item = video_item(frames, None)
    assert item.kind == "video" and item.timestamps_s is None
    assert item.sampled_indices == np.linspace(0, 119, 32).astype(int).tolist()
    assert item.frames[:, 0, 0, 0].tolist() == item.sampled_indices
    assert video_frame_indices(120, [], max_frames=8).tolist() == [0, 17, 34, 51, 68, 85, 102, 119]
    assert video_frame_indices(3, None).tolist() == [0, 1, 2]


def test_study_with_up_to_five_images_stays_separate_images() -> None:
    frames = [np.full((20 + i, 30, 3), i * 10, dtype=np.uint8) for i in range(5)]
    items = study_items(frames)
    assert [item.kind for item in items] == ["image"] * 5
    assert [item.frames.shape[1] for item in items] == [20, 21, 22, 23, 24]


def test_study_with_more_than_five_images_becomes_one_video() -> None:
    frames = [np.full((40, 30), i * 10, dtype=np.uint8) for i in range(5)] + [
        np.full((80, 60), 200, np.uint8)
    ]
    (item,) = study_items(frames)
    assert item.kind == "volume" and item.frames.shape == (6, 40, 30, 3) and item.timestamps_s is None
    assert item.frames[5, 10, 10].tolist() == [200, 200, 200]  # resized to the first image's size


def test_volume_item_builds_its_frames_in_place() -> None:
    """The sampled RGB frames are the only full-size allocation (a list of frames then np.stack
    needed twice the item's memory)."""
    import tracemalloc

    stack = np.random.default_rng(1).integers(-1000, 1500, size=(120, 256, 256), dtype=np.int16)
    tracemalloc.start()
    try:
        item = volume_item(stack, slices=120, window=(400, 40))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert item.frames.shape == (120, 256, 256, 3)
    assert np.array_equal(item.frames[7, ..., 1], apply_window(stack[7], 400, 40))
    assert peak < 1.3 * item.frames.nbytes
