"""Phantom series in every acquisition geometry land every marker at the right pixel of every plane.

Expected pixels are computed here from the phantom's own geometry (the bounding box of all
pixel centres and the display convention), not from the code under test: axial and coronal
show the patient's left on the image's right, axial has anterior up, coronal and sagittal have
the head up, sagittal has anterior on the left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_net.synthetic import (
    CORONAL,
    DEFAULT_MARKERS,
    HU_SOFT_TISSUE,
    SAGITTAL,
    SeriesGeometry,
    ct_series,
    write_datasets,
)
from viewer.loader import MemoryBudgetError, load_series
from viewer.reslice import plane_image

# image right, image down (LPS) of each displayed plane, and the LPS axis of its position
DISPLAY = {
    "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), 2),
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), 1),
    "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0]), 0),
}
OBLIQUE = (0.8660254, 0.5, 0.0, -0.5, 0.8660254, 0.0)  # axial rotated 30 degrees about z


def write_phantom(folder: Path, geometry: SeriesGeometry, **kwargs: object) -> list[Path]:
    return write_datasets(ct_series(geometry, **kwargs), folder)


def pixel_centres(geometry: SeriesGeometry) -> np.ndarray:
    """LPS centres of every pixel of every slice (n, 3)."""
    return np.concatenate([geometry.pixel_lps(p).reshape(-1, 3) for p in geometry.slice_positions()])


def expected_pixel(
    plane: str,
    marker_lps: np.ndarray,
    bbox_min: np.ndarray,
    bbox_max: np.ndarray,
    spacing_rc: tuple[float, float],
) -> tuple[int, int]:
    right, down, _ = DISPLAY[plane]
    # pixel [0, 0] is at the bounding-box corner that is leftmost on screen and topmost
    corner = np.where(right + down > 0, bbox_min, bbox_max)
    corner = np.where((right + down) == 0, 0.0, corner)
    col = float((marker_lps - corner) @ right) / spacing_rc[1]
    row = float((marker_lps - corner) @ down) / spacing_rc[0]
    return round(row), round(col)


def assert_markers_in_all_planes(volume, geometry: SeriesGeometry) -> None:
    centres = pixel_centres(geometry)
    lo, hi = centres.min(axis=0), centres.max(axis=0)
    for plane, (right, down, axis) in DISPLAY.items():
        for marker in DEFAULT_MARKERS:
            lps = np.asarray(marker.lps)
            img = plane_image(volume, plane, float(lps[axis]))
            row, col = expected_pixel(plane, lps, lo, hi, img.pixel_spacing)
            assert img.pixels[row, col] == pytest.approx(marker.value, abs=0.5), (plane, marker)
            # the mirror pixel (what a flipped axis would show there) must not have the marker;
            # phantoms are centred on the LPS origin, so mirroring is about the image centre
            rows, cols = img.shape
            if abs(lps @ right) > 1:
                mirrored = img.pixels[row, cols - 1 - col]
            elif abs(lps @ down) > 1:
                mirrored = img.pixels[rows - 1 - row, col]
            else:  # marker on the plane axis: the mirrored plane must not show it
                mirrored = plane_image(volume, plane, -float(lps[axis])).pixels[row, col]
            assert abs(float(mirrored) - marker.value) > 100, (plane, marker, "mirrored")


@pytest.mark.parametrize(
    "name, geometry",
    [
        ("axial", SeriesGeometry(rows=96, columns=112, slices=48)),
        (
            "coronal_acquired",
            SeriesGeometry(rows=64, columns=112, orientation=CORONAL, slices=60, slice_step=2.0),
        ),
        (
            "sagittal_acquired",
            SeriesGeometry(rows=64, columns=80, orientation=SAGITTAL, slices=80, slice_step=2.0),
        ),
        ("oblique", SeriesGeometry(rows=100, columns=100, orientation=OBLIQUE, slices=48, slice_step=2.5)),
    ],
)
def test_marker_at_expected_pixel_in_every_plane(tmp_path: Path, name: str, geometry: SeriesGeometry) -> None:
    result = load_series(write_phantom(tmp_path, geometry))
    assert len(result.volumes) == 1 and result.warnings == []
    assert_markers_in_all_planes(result.volumes[0], geometry)


def test_reversed_file_order_gives_identical_volume(tmp_path: Path) -> None:
    forward = SeriesGeometry(rows=64, columns=64, slices=40)
    reversed_geom = SeriesGeometry(
        rows=64, columns=64, positions=[tuple(p) for p in forward.slice_positions()[::-1]]
    )
    a = load_series(write_phantom(tmp_path / "fwd", forward)).volumes[0]
    b = load_series(write_phantom(tmp_path / "rev", reversed_geom)).volumes[0]
    assert np.array_equal(a.voxels, b.voxels)
    assert np.allclose(a.origin, b.origin) and np.allclose(a.direction, b.direction)
    assert_markers_in_all_planes(b, reversed_geom)


def test_hu_exact_after_rescale_and_int16(tmp_path: Path) -> None:
    geometry = SeriesGeometry(rows=64, columns=64, slices=20)
    volume = load_series(write_phantom(tmp_path, geometry)).volumes[0]
    assert volume.voxels.dtype == np.int16  # integral slope/intercept: no float copy
    stored_hu = set(np.unique(volume.voxels).tolist())
    assert stored_hu <= {-1000, HU_SOFT_TISSUE, 700, 1500, 1200, 1000}
    i, j, k = np.rint(volume.lps_to_index(np.array([60.0, 0.0, 0.0]))).astype(int)
    assert volume.voxels[k, j, i] == 1500
    assert volume.spacing == pytest.approx((2.0, 2.0, 2.5))
    assert np.allclose(volume.direction, np.eye(3))


def test_non_integral_rescale_gives_float_hu(tmp_path: Path) -> None:
    geometry = SeriesGeometry(rows=32, columns=32, slices=6)
    volume = load_series(write_phantom(tmp_path, geometry, rescale=(0.5, -1000.0))).volumes[0]
    assert volume.voxels.dtype == np.float32
    assert set(np.unique(volume.voxels).tolist()) <= {-1000.0, 40.0, 700.0, 1500.0, 1200.0, 1000.0}


def test_gantry_tilt_detected_reported_and_corrected(tmp_path: Path) -> None:
    geometry = SeriesGeometry(rows=80, columns=96, slices=50, step_vector=(0.0, 0.5, 2.5))
    result = load_series(write_phantom(tmp_path, geometry, gantry_tilt=11.31))
    volume = result.volumes[0]
    assert any("tilt" in w.lower() for w in result.warnings)
    assert volume.metadata["geometry_corrected"] is True
    assert volume.metadata["tilt_degrees"] == pytest.approx(np.degrees(np.arctan(0.5 / 2.5)), abs=0.01)
    assert np.allclose(volume.direction, np.eye(3), atol=1e-9)  # orthogonal grid after resampling
    assert_markers_in_all_planes(volume, geometry)


def test_irregular_spacing_detected_and_resampled(tmp_path: Path) -> None:
    regular = SeriesGeometry(rows=64, columns=64, slices=41, slice_step=2.5).slice_positions()
    kept = [p for i, p in enumerate(regular) if i not in (7, 8, 30)]  # missing slices
    geometry = SeriesGeometry(rows=64, columns=64, positions=[tuple(p) for p in kept])
    result = load_series(write_phantom(tmp_path, geometry))
    volume = result.volumes[0]
    assert any("irregular" in w.lower() for w in result.warnings)
    assert volume.voxels.shape[0] == 41 and volume.spacing[2] == pytest.approx(2.5)
    assert_markers_in_all_planes(volume, geometry)


def test_mixed_orientation_and_size_are_split(tmp_path: Path) -> None:
    series_uid = "1.2.826.0.1.3680043.8.498.999"
    axial = write_phantom(
        tmp_path / "a", SeriesGeometry(rows=64, columns=64, slices=20), series_uid=series_uid
    )
    coronal = write_phantom(
        tmp_path / "c",
        SeriesGeometry(rows=48, columns=64, orientation=CORONAL, slices=5),
        series_uid=series_uid,
    )
    small = write_phantom(
        tmp_path / "s",
        SeriesGeometry(rows=32, columns=32, pixel_spacing=(4.0, 4.0), slices=3),
        series_uid=series_uid,
    )
    result = load_series(axial + coronal + small)
    shapes = sorted(v.voxels.shape for v in result.volumes)
    assert shapes == [(3, 32, 32), (5, 48, 64), (20, 64, 64)]
    assert any("split" in w for w in result.warnings)
    assert result.volumes[0].voxels.shape == (20, 64, 64)  # the main stack comes first


def test_progressive_preview_then_middle_slice_first(tmp_path: Path) -> None:
    files = write_phantom(tmp_path, SeriesGeometry(rows=32, columns=32, slices=21))
    events = []
    result = load_series(files, on_slice=events.append, workers=2)
    assert events[0].preview and events[0].pixels.shape == (32, 32)
    slices = [e for e in events if not e.preview]
    assert [e.k for e in slices[:5]] == [10, 11, 9, 12, 8]  # middle slice first, then outwards
    assert sorted(e.k for e in slices) == list(range(21))
    assert slices[-1].loaded == 21 and slices[-1].volume is result.volumes[0]
    assert np.array_equal(slices[0].pixels, result.volumes[0].voxels[10])


def test_memory_budget_refuses_clearly(tmp_path: Path) -> None:
    files = write_phantom(tmp_path, SeriesGeometry(rows=64, columns=64, slices=10))
    with pytest.raises(MemoryBudgetError, match="MiB"):
        load_series(files, memory_budget_bytes=10 * 64 * 64)  # needs 2 bytes per voxel


def test_unreadable_files_are_reported_not_fatal(tmp_path: Path) -> None:
    files = write_phantom(tmp_path, SeriesGeometry(rows=32, columns=32, slices=5))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    result = load_series(files + [junk])
    assert result.volumes[0].voxels.shape == (5, 32, 32)
    assert any("junk.dcm" in w for w in result.warnings)


def test_signed_ct_that_overflows_int16_is_reloaded_as_int32(tmp_path: Path) -> None:
    datasets = list(ct_series(SeriesGeometry(rows=16, columns=16, slices=3)))
    for n, ds in enumerate(datasets):
        stored = np.full((16, 16), 100, dtype=np.int16)
        stored[0, 0] = -32768 if n == 2 else 0  # only the last slice leaves int16 after rescale
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
        ds.PixelData = stored.tobytes()
    volume = load_series(write_datasets(datasets, tmp_path)).volumes[0]
    assert volume.voxels.dtype == np.int32
    assert volume.voxels[2, 0, 0] == -32768 - 1024 and volume.voxels[0, 0, 0] == -1024
    assert volume.voxels[1, 5, 5] == 100 - 1024


def test_repeated_positions_split_into_phases_in_acquisition_order(tmp_path: Path) -> None:
    from dicom_net.synthetic import ct_phantom_hu

    uid, geometry = "1.2.826.0.1.3680043.8.498.777", SeriesGeometry(rows=32, columns=32, slices=6)
    phases = []
    for acquisition, offset in ((2, 100.0), (1, 0.0)):  # written late phase first
        datasets = list(
            ct_series(
                geometry,
                series_uid=uid,
                frame_of_reference_uid=uid + ".1",
                hu=lambda p, o=offset: ct_phantom_hu(p) + o,
            )
        )
        for ds in datasets:
            ds.AcquisitionNumber = acquisition
        phases += write_datasets(datasets, tmp_path / str(acquisition))
    result = load_series(phases)
    assert [v.voxels.shape for v in result.volumes] == [(6, 32, 32), (6, 32, 32)]
    early, late = result.volumes
    assert np.array_equal(late.voxels.astype(int) - early.voxels.astype(int), np.full((6, 32, 32), 100))
    assert any("share each slice position" in w for w in result.warnings)


def test_folder_stands_for_its_files(tmp_path: Path) -> None:
    write_phantom(tmp_path / "series" / "part1", SeriesGeometry(rows=16, columns=16, slices=4))
    assert load_series([tmp_path / "series"]).volumes[0].voxels.shape == (4, 16, 16)


def test_scanner_style_tilt_tilted_planes_stepping_along_the_table(tmp_path: Path) -> None:
    # real gantry tilt: image planes tilted 15 degrees about L-R, slices stepping along z (the table)
    t = np.radians(15.0)
    geometry = SeriesGeometry(
        rows=96,
        columns=96,
        orientation=(1.0, 0.0, 0.0, 0.0, np.cos(t), -np.sin(t)),
        slices=50,
        step_vector=(0.0, 0.0, 2.5),
    )
    result = load_series(write_phantom(tmp_path, geometry, gantry_tilt=15.0))
    volume = result.volumes[0]
    assert volume.metadata["geometry_corrected"] is True
    assert volume.metadata["tilt_degrees"] == pytest.approx(15.0, abs=0.05)
    assert np.allclose(volume.direction.T @ volume.direction, np.eye(3), atol=1e-9)
    for marker in DEFAULT_MARKERS:  # every marker at its true LPS position in the corrected volume
        i, j, k = np.rint(volume.lps_to_index(np.asarray(marker.lps))).astype(int)
        assert volume.voxels[k, j, i] == marker.value
    img = plane_image(volume, "axial", 0.0)
    row, col = img.from_lps(np.array([60.0, 0.0, 0.0]))
    assert img.pixels[round(row), round(col)] == pytest.approx(1500.0)
    assert img.labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_same_instance_given_twice_is_not_a_second_phase(tmp_path: Path) -> None:
    files = write_phantom(tmp_path / "a", SeriesGeometry(rows=16, columns=16, slices=5))
    copies = tmp_path / "copies"
    copies.mkdir()
    for f in files[:2]:
        (copies / f.name).write_bytes(f.read_bytes())
    result = load_series(files + sorted(copies.iterdir()))
    assert len(result.volumes) == 1 and result.volumes[0].voxels.shape == (5, 16, 16)
    assert any("2 file(s) repeat an instance" in w for w in result.warnings)


def test_callback_cancels_the_load(tmp_path: Path) -> None:
    from viewer.loader import LoadCancelled

    files = write_phantom(tmp_path, SeriesGeometry(rows=32, columns=32, slices=40))
    seen = []

    def on_slice(event) -> None:
        seen.append(event.k)
        if len(seen) == 4:
            raise LoadCancelled

    with pytest.raises(LoadCancelled):
        load_series(files, on_slice=on_slice, workers=2)
    assert len(seen) == 4


def test_one_truncated_file_is_blank_and_reported_not_fatal(tmp_path: Path) -> None:
    geometry = SeriesGeometry(rows=96, columns=96, slices=9)  # 192 mm: air in the corners
    files = write_phantom(tmp_path, geometry)
    by_z = sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    broken = by_z[3]
    broken.write_bytes(broken.read_bytes()[:-500])  # pixel data cut short
    result = load_series(files)
    volume = result.volumes[0]
    assert volume.voxels.shape == (9, 96, 96)
    assert np.all(volume.voxels[3] == -1000)  # blank = darkest value of the other slices (air)
    assert np.array_equal(volume.voxels[4], load_series(by_z[4:5]).volumes[0].voxels[0])
    assert any("1 slice(s) could not be decoded" in w and broken.name in w for w in result.warnings)
