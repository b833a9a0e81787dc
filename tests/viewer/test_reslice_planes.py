"""Reslicing: oblique planes, thick slabs, scroll positions, window/level, labels and presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_net.synthetic import SeriesGeometry, ct_phantom_hu, ct_series, write_datasets
from viewer.loader import load_series
from viewer.orientation import direction_label, edge_labels
from viewer.presets import default_window, modality_presets, presets_for
from viewer.reslice import Oblique, plane_image, plane_positions, window_to_uint8


@pytest.fixture(scope="module")
def axial_volume(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("axial")
    geometry = SeriesGeometry(rows=96, columns=112, slices=48, slice_step=2.0)
    return load_series(write_datasets(ct_series(geometry), folder)).volumes[0]


def test_oblique_plane_samples_the_phantom_where_it_says(axial_volume) -> None:
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    plane = Oblique(row_dir=(c, s, 0.0), col_dir=(0.0, 0.0, -1.0), center=(60.0, 0.0, 0.0))
    img = plane_image(axial_volume, plane, 0.0)
    assert np.allclose(img.row_dir, (c, s, 0)) and np.allclose(img.col_dir, (0, 0, -1))
    assert img.labels == {"left": "RA", "right": "LP", "top": "H", "bottom": "F"}
    rows, cols = img.shape
    rr, cc = np.mgrid[0:rows, 0:cols]
    lps = (
        img.origin
        + cc[..., None] * img.pixel_spacing[1] * img.row_dir
        + rr[..., None] * img.pixel_spacing[0] * img.col_dir
    )
    i, j, k = np.moveaxis(axial_volume.lps_to_index(lps), -1, 0)
    inside = (i >= 0) & (i <= 111) & (j >= 0) & (j <= 95) & (k >= 0) & (k <= 47)
    truth = ct_phantom_hu(lps.astype(np.float32))
    agree = np.isclose(img.pixels, truth, atol=1.0)[inside]
    assert inside.sum() > 1000 and agree.mean() > 0.9  # disagreement only where interpolation blurs edges
    row, col = img.from_lps(np.array([60.0, 0.0, 0.0]))
    assert img.pixels[round(row), round(col)] == pytest.approx(1500.0)
    # the marker (patient left) is right of the mirrored column
    assert img.pixels[round(row), cols - 1 - round(col)] != pytest.approx(1500.0)


def test_thick_slab_mip_minip_mean(axial_volume) -> None:
    z = 26.0  # head marker spans z 33..47 at x = y = 0; a 20 mm slab around z=26 reaches z=36
    thin = plane_image(axial_volume, "axial", z)
    r, c = (round(v) for v in thin.from_lps(np.array([0.0, 0.0, z])))
    assert thin.pixels[r, c] == 40
    mip = plane_image(axial_volume, "axial", z, slab_mm=20.0, slab_mode="mip")
    minip = plane_image(axial_volume, "axial", z, slab_mm=20.0, slab_mode="minip")
    mean = plane_image(axial_volume, "axial", z, slab_mm=20.0, slab_mode="mean")
    assert mip.pixels[r, c] == 1000 and minip.pixels[r, c] == 40
    slice_z = np.asarray(axial_volume.origin)[2] + 2.0 * np.arange(48)
    in_slab = slice_z[(slice_z >= z - 10) & (slice_z <= z + 10)]
    x, y, _ = thin.to_lps(r, c)  # the pixel centre, not exactly (0, 0)
    points = np.stack([np.full_like(in_slab, x), np.full_like(in_slab, y), in_slab], -1).astype(np.float32)
    expected = ct_phantom_hu(points).mean()
    assert len(in_slab) == 10 and 40 < expected < 1000
    assert mean.pixels[r, c] == pytest.approx(expected, abs=0.01)
    assert mip.slab_mm == 20.0 and mip.slab_mode == "mip"


def test_scroll_positions_and_index(axial_volume) -> None:
    z = plane_positions(axial_volume, "axial")
    assert len(z) == 48 and z[1] - z[0] == pytest.approx(2.0)
    assert z[0] == pytest.approx(axial_volume.origin[2])
    by_index = plane_image(axial_volume, "axial", index=7)
    assert np.array_equal(by_index.pixels, axial_volume.voxels[7])
    assert len(plane_positions(axial_volume, "coronal")) == 96
    with pytest.raises(ValueError, match="outside"):
        plane_image(axial_volume, "axial", 500.0)
    with pytest.raises(ValueError, match="index"):
        plane_image(axial_volume, "axial", index=48)


def test_window_to_uint8_follows_dicom_linear_function() -> None:
    values = np.array([-1000, -160, -159, 40, 239, 240, 3000], dtype=np.int16)
    out = window_to_uint8(values, 400, 40)
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped
    expected = np.clip(np.rint(((values - 39.5) / 399 + 0.5) * 255), 0, 255)
    assert out.tolist() == expected.astype(int).tolist()
    assert out[0] == 0 and out[-1] == 255 and out[3] == 128
    assert window_to_uint8(values, 400, 40, invert=True).tolist() == (255 - expected).astype(int).tolist()


@pytest.mark.parametrize(
    "vector, label",
    [
        ((1, 0, 0), "L"),
        ((-1, 0, 0), "R"),
        ((0, -1, 0), "A"),
        ((0, 1, 0), "P"),
        ((0, 0, 1), "H"),
        ((0, 0, -1), "F"),
        ((0, 0.6, -0.8), "FP"),
        ((0.9, -0.3, 0.1), "LA"),
    ],
)
def test_direction_labels(vector: tuple[float, ...], label: str) -> None:
    assert direction_label(vector) == label


def test_edge_labels_of_the_three_standard_views() -> None:
    assert edge_labels((1, 0, 0), (0, 1, 0)) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert edge_labels((1, 0, 0), (0, 0, -1)) == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert edge_labels((0, 1, 0), (0, 0, -1)) == {"left": "A", "right": "P", "top": "H", "bottom": "F"}


def test_presets_file_windows_first_then_ct_standards() -> None:
    ct = {p.name: (p.window, p.level) for p in modality_presets("CT")}
    assert ct == {
        "Brain": (80, 40),
        "Soft tissue": (400, 40),
        "Lung": (1500, -600),
        "Liver": (150, 90),
        "Bone": (2500, 480),
    }
    meta = {"modality": "CT", "file_windows": [(350.0, 50.0, "MEDIASTINUM")]}
    presets = presets_for(meta)
    assert (presets[0].name, presets[0].window, presets[0].level) == ("MEDIASTINUM", 350.0, 50.0)
    assert len(presets) == 6
    assert default_window(meta, (-1024, 3000)).window == 350.0
    full = default_window({"modality": "US"}, (0.0, 255.0))
    assert (full.window, full.level) == (255.0, 127.5)
    assert modality_presets("US") == ()


def test_native_plane_of_volume_without_geometry(tmp_path: Path) -> None:
    from dicom_net.synthetic import ultrasound_cine

    path = write_datasets([ultrasound_cine(frames=12, rows=48, columns=64)], tmp_path)
    volume = load_series(path).volumes[0]
    assert volume.voxels.shape == (12, 48, 64, 3)
    for frame in (0, 5, 11):  # the generator writes the frame number into red of pixel (0, 0)
        assert plane_image(volume, "native", index=frame).pixels[0, 0, 0] == frame
    assert volume.frame_start_times_ms[:3] == pytest.approx([0.0, 40.0, 80.0])
