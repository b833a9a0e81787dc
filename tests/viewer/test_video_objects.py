"""DICOM video objects: a real H.264 / MPEG-2 / HEVC stream made here with PyAV's encoders, put in
a Video Photographic Image Storage object the way PS3.5 says (the whole stream in fragments, empty
Basic Offset Table), then loaded, played in the cine view and rendered by the snapshot command.

The video is 30 frames of 320x240 at 30 frames/s: a bright disc (220) on a dark background (30)
whose centre moves from column 64 (frame 0) to column 256 (frame 29), as in the US phantom."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import HEVCMP51, MPEG2MPML, MPEG4HP41, VideoPhotographicImageStorage, generate_uid

from viewer.loader import MemoryBudgetError, load_series
from viewer.video import video_stream

FRAMES, ROWS, COLS, FPS = 30, 240, 320, 30
CODECS = {  # transfer syntax: (PyAV encoder, raw stream format, encoder options)
    MPEG4HP41: ("libx264", "h264", {"crf": "12", "preset": "ultrafast"}),
    MPEG2MPML: ("mpeg2video", "mpeg2video", {"qscale": "2"}),
    HEVCMP51: ("libx265", "hevc", {"x265-params": "log-level=error:crf=12"}),
}


def disc_column(frame: int) -> float:
    return COLS * (0.2 + 0.6 * frame / (FRAMES - 1))


def encode_video(tsyntax: str) -> bytes:
    codec, fmt, options = CODECS[tsyntax]
    buffer = io.BytesIO()
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = COLS, ROWS, "yuv420p"
        stream.options = options
        for i in range(FRAMES):
            image = np.full((ROWS, COLS, 3), 30, dtype=np.uint8)
            image[(xx - disc_column(i)) ** 2 + (yy - ROWS / 2) ** 2 <= 36**2] = 220
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def video_dataset(tsyntax: str, *, timing: bool = True, frames: int = FRAMES) -> tuple[Dataset, bytes]:
    stream = encode_video(tsyntax)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = tsyntax
    ds.file_meta.MediaStorageSOPClassUID = VideoPhotographicImageStorage
    ds.SOPClassUID = VideoPhotographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesDescription, ds.PatientName, ds.PatientID = (
        "XC",
        "Phantom video",
        "VIDEO^TEST",
        "V1",
    )
    ds.SeriesNumber, ds.InstanceNumber = 7, 1
    ds.Rows, ds.Columns, ds.SamplesPerPixel = ROWS, COLS, 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    if timing:
        ds.FrameTime = 1000.0 / FPS
        ds.FrameIncrementPointer = (0x0018, 0x1063)
        ds.CineRate = FPS
    # the whole stream as one "frame" split into 3 fragments, Basic Offset Table empty (PS3.5 8.2.8)
    ds.PixelData = encapsulate([stream], fragments_per_frame=3, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds, stream


def write(ds: Dataset, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def centre_column(rgb: np.ndarray, row_band: slice = slice(100, 140)) -> float:
    """Column of the bright disc's centre (mean column of pixels above mid grey in a band of rows)."""
    band = rgb[row_band, :, :3].astype(int).mean(axis=2)
    return float(np.nonzero(band > 125)[1].mean())


@pytest.fixture(scope="module")
def h264_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds, _ = video_dataset(MPEG4HP41)
    return write(ds, tmp_path_factory.mktemp("video"))


def test_the_stream_is_whole_again_after_encapsulation(tmp_path: Path) -> None:
    ds, stream = video_dataset(MPEG4HP41)
    read = pydicom.dcmread(write(ds, tmp_path))
    joined = video_stream(read)
    # fragments are padded to even length: the last may carry one extra zero byte
    assert joined[: len(stream)] == stream and len(joined) - len(stream) in (0, 1)


def test_h264_video_loads_as_a_timed_rgb_cine_with_the_disc_where_it_was(h264_file: Path) -> None:
    events = []
    result = load_series([h264_file], on_slice=events.append)
    volume = result.volumes[0]
    assert volume.voxels.shape == (FRAMES, ROWS, COLS, 3) and volume.voxels.dtype == np.uint8
    assert volume.metadata["has_patient_geometry"] is False
    assert volume.metadata["pixel_spacing_known"] is False  # no spacing in a photograph: px only
    assert volume.frame_start_times_ms == pytest.approx([i * 1000.0 / FPS for i in range(FRAMES)])
    assert events[0].preview and events[0].pixels.shape == (ROWS, COLS, 3)
    assert [e.k for e in events[1:]] == list(range(FRAMES))  # decoded in order, one event each
    for frame in (0, 10, 29):
        assert centre_column(volume.voxels[frame]) == pytest.approx(disc_column(frame), abs=1.5)
        assert volume.voxels[frame, 120, int(disc_column(frame))].mean() == pytest.approx(220, abs=8)
        assert volume.voxels[frame, 10, 10].mean() == pytest.approx(30, abs=8)


@pytest.mark.parametrize("tsyntax", [MPEG2MPML, HEVCMP51], ids=["mpeg2", "hevc"])
def test_mpeg2_and_hevc_videos_decode_too(tmp_path: Path, tsyntax: str) -> None:
    ds, _ = video_dataset(tsyntax)
    volume = load_series([write(ds, tmp_path)]).volumes[0]
    assert len(volume.voxels) == FRAMES
    for frame in (0, 15, 29):
        assert centre_column(volume.voxels[frame]) == pytest.approx(disc_column(frame), abs=1.5)


def test_without_cine_attributes_the_stream_rate_times_the_frames(tmp_path: Path) -> None:
    ds, _ = video_dataset(MPEG4HP41, timing=False)
    volume = load_series([write(ds, tmp_path)]).volumes[0]
    assert volume.frame_start_times_ms == pytest.approx([i * 1000.0 / FPS for i in range(FRAMES)])
    assert volume.metadata["frame_timing_source"] == "video stream"


def test_overstated_frame_count_keeps_the_decoded_frames_and_warns(tmp_path: Path) -> None:
    ds, _ = video_dataset(MPEG4HP41, frames=FRAMES + 5)
    result = load_series([write(ds, tmp_path)])
    volume = result.volumes[0]
    assert len(volume.voxels) == FRAMES and len(volume.frame_start_times_ms) == FRAMES
    assert any("30 decodable frames, not the 35" in w for w in result.warnings)


def test_a_video_larger_than_the_budget_keeps_every_nth_frame(h264_file: Path) -> None:
    frame_bytes = ROWS * COLS * 3
    result = load_series([h264_file], memory_budget_bytes=11 * frame_bytes)
    volume = result.volumes[0]
    assert len(volume.voxels) == 10  # every 3rd frame: 0, 3, ..., 27
    assert volume.frame_start_times_ms == pytest.approx([k * 3 * 1000.0 / FPS for k in range(10)])
    assert centre_column(volume.voxels[5]) == pytest.approx(disc_column(15), abs=1.5)
    assert any("keeping one frame in 3" in w for w in result.warnings)
    with pytest.raises(MemoryBudgetError):
        load_series([h264_file], memory_budget_bytes=frame_bytes // 2)


def test_video_plays_in_the_cine_view_at_its_rate(qtbot, h264_file: Path) -> None:
    from viewer.qt.cine_view import CineView

    now = [0.0]
    view = CineView(clock=lambda: now[0])
    qtbot.addWidget(view)
    view.resize(320, 300)
    view.set_volume(load_series([h264_file]).volumes[0])
    assert view.player.recorded_fps == pytest.approx(FPS)
    view.play()
    now[0] = 0.51  # just past half a second: frame 15 (starts at 500 ms, lasts 33.3 ms)
    assert view.tick() == 15
    assert view.describe()["recorded_fps"] == pytest.approx(FPS)


def test_snapshot_cli_renders_the_requested_video_frame(h264_file: Path, tmp_path: Path) -> None:
    from app.cli.main import main
    from tests.viewer.test_snapshot_png import read_png

    out = tmp_path / "frame.png"
    # 320x240 window on a 320x240 image: one screen pixel per image pixel, centred (x = col + 0.5)
    assert main(["snapshot", str(h264_file), "--out", str(out), "--frame", "20", "--size", "320x240"]) == 0
    png = read_png(out)
    assert centre_column(png) == pytest.approx(disc_column(20) + 0.5, abs=1.5)
    assert main(["snapshot", str(h264_file), "--out", str(out), "--frame", "30"]) == 2


def test_video_is_asked_as_video_from_its_frames(h264_file: Path) -> None:
    from app.assistant.ai_inputs import AIView, visual_item_for

    volume = load_series([h264_file]).volumes[0]
    item = visual_item_for(volume, AIView(fps=10))  # 10 frames/s from a 30 frames/s video
    assert item.kind == "video" and item.sampled_indices == list(range(0, FRAMES, 3))
    assert list(item.timestamps_s) == pytest.approx([k / 10 for k in range(10)])
    frames = np.asarray(item.frames)
    for k, index in enumerate(item.sampled_indices):
        assert np.array_equal(frames[k], volume.voxels[index])
