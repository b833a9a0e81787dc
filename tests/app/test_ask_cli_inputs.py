"""app.assistant.ai_inputs: what the model is shown for a loaded series (plane, laterality, W/L, sampling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.assistant.ai_inputs import AIView, series_files, visual_item_for
from dicom_net.synthetic import SeriesGeometry, ct_series, ultrasound_cine, write_datasets
from viewer.loader import load_volume
from viewer.reslice import plane_image
from viewer.volume import Volume

# 128x128 axial slices, 2 mm pixels, 20 slices 2.5 mm apart centred on z = 0: the phantom's left
# marker (LPS x=+60 mm, 1500 HU) lies on the patient's left, soft tissue (40 HU) at x=-60 mm.
GEOMETRY = SeriesGeometry(rows=128, columns=128, slices=20)


@pytest.fixture(scope="module")
def ct_volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    files = write_datasets(ct_series(GEOMETRY), tmp_path_factory.mktemp("ct"))
    volume, _ = load_volume(files)
    return volume


def _pixel(volume: Volume, plane: str, index: int, lps: tuple[float, float, float]) -> tuple[int, int]:
    row, col = plane_image(volume, plane, index=index).from_lps(np.array(lps))
    return round(row), round(col)


def test_axial_slice_is_radiological_with_window_applied(ct_volume: Volume) -> None:
    item = visual_item_for(ct_volume, AIView(mode="2d", window=400, level=40))
    assert item.kind == "image" and item.frames.shape == (1, 128, 128, 3)
    frame = item.frames[0, ..., 0]
    z = float(plane_image(ct_volume, "axial", index=10).position_mm)
    left_r, left_c = _pixel(ct_volume, "axial", 10, (60.0, 0.0, z))
    right_r, right_c = _pixel(ct_volume, "axial", 10, (-60.0, 0.0, z))
    assert left_c > 64 > right_c  # patient's left on the image's right
    assert frame[left_r, left_c] == 255  # 1500 HU: above the window
    assert frame[right_r, right_c] == 128  # 40 HU = level: mid grey
    assert frame[0, 0] == 0  # air: below the window


def test_other_window_gives_other_levels(ct_volume: Volume) -> None:
    frame = visual_item_for(ct_volume, AIView(mode="2d", window=2000, level=500)).frames[0, ..., 0]
    z = float(plane_image(ct_volume, "axial", index=10).position_mm)
    right_r, right_c = _pixel(ct_volume, "axial", 10, (-60.0, 0.0, z))
    assert frame[right_r, right_c] == 69  # ((40 - 499.5) / 1999 + 0.5) * 255 = 68.9
    assert frame[0, 0] == 0


def test_sagittal_plane_has_anterior_on_the_left(ct_volume: Volume) -> None:
    index = 64  # x = +1 mm, through the anterior marker (x=0, y=-50 mm, 1200 HU, radius 6 mm)
    item = visual_item_for(ct_volume, AIView(mode="2d", plane="sagittal", index=index, window=400, level=40))
    x = float(plane_image(ct_volume, "sagittal", index=index).position_mm)
    ant_r, ant_c = _pixel(ct_volume, "sagittal", index, (x, -50.0, 1.25))
    post_r, post_c = _pixel(ct_volume, "sagittal", index, (x, 50.0, 1.25))
    assert ant_c < post_c
    assert item.frames[0, ant_r, ant_c, 0] == 255 and item.frames[0, post_r, post_c, 0] == 128


def test_3d_mode_samples_distinct_slices_capped_at_depth(ct_volume: Volume) -> None:
    item = visual_item_for(ct_volume, AIView(mode="3d", slices=64))
    assert item.kind == "volume" and item.frames.shape[0] == 20
    assert item.sampled_indices == list(range(20))
    coronal = visual_item_for(ct_volume, AIView(mode="3d", plane="coronal", slices=16))
    assert len(coronal.sampled_indices) == len(set(coronal.sampled_indices)) == 16
    assert coronal.sampled_indices[0] == 0 and coronal.sampled_indices[-1] == 127


def test_auto_mode_picks_3d_for_a_ct_stack(ct_volume: Volume) -> None:
    assert visual_item_for(ct_volume).kind == "volume"


def test_cine_becomes_video_at_one_frame_per_second(tmp_path: Path) -> None:
    files = write_datasets([ultrasound_cine(frames=60, rows=64, columns=80, frame_time_ms=40.0)], tmp_path)
    volume, _ = load_volume(files)
    item = visual_item_for(volume)
    assert item.kind == "video"
    assert item.sampled_indices == [0, 25, 50]  # 60 frames x 40 ms = 2.4 s
    assert item.timestamps_s == pytest.approx([0.0, 1.0, 2.0])
    assert item.frames[:, 0, 0, 0].tolist() == [0, 25, 50]  # the generator writes the frame number there
    with pytest.raises(ValueError, match="not a 3D stack"):
        visual_item_for(volume, AIView(mode="3d"))


def test_cine_without_frame_timing_gets_no_invented_timestamps(tmp_path: Path) -> None:
    cine = ultrasound_cine(frames=60, rows=64, columns=80, frame_time_ms=40.0)
    for keyword in ("FrameTime", "FrameIncrementPointer", "CineRate", "RecommendedDisplayFrameRate"):
        delattr(cine, keyword)  # the timing is unknown
    files = write_datasets([cine], tmp_path)
    volume, _ = load_volume(files)
    assert not volume.frame_start_times_ms
    item = visual_item_for(volume, AIView(mode="video"))
    assert item.kind == "video" and item.timestamps_s is None  # was 0.0, 0.1, 0.2 ... (invented 10 fps)
    assert item.sampled_indices == np.linspace(0, 59, 32).astype(int).tolist()
    assert item.frames[:, 0, 0, 0].tolist() == item.sampled_indices


def test_series_files_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no files"):
        series_files(str(tmp_path))
    with pytest.raises(ValueError, match="neither a folder nor a series"):
        series_files("1.2.3.4", archive_dir=tmp_path / "missing")
    assert not (tmp_path / "missing").exists()  # a typo never creates an archive


def test_view_state_gives_the_displayed_slice_and_window(ct_volume: Volume) -> None:
    from viewer.view_state import ViewState

    state = ViewState()
    state.plane = "axial"
    state.set_slice_count(20)
    state.set_slice(3)
    state.set_window(2000, 500)
    state.invert = True
    item = visual_item_for(ct_volume, AIView.from_view_state(state))
    assert item.kind == "image" and item.sampled_indices == [3]
    assert item.frames[0, 0, 0, 0] == 255  # air, window 2000/500 -> 0, inverted
    z = float(plane_image(ct_volume, "axial", index=3).position_mm)
    r, c = _pixel(ct_volume, "axial", 3, (-60.0, 0.0, z))
    assert item.frames[0, r, c, 0] == 255 - 69
