"""Slices at one position along the normal but shifted in-plane (tiles or stations of a scout, a
wide field of view acquired in two halves) are separate stacks, never a crash or a mixed volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from dicom_net.synthetic import SeriesGeometry, ct_phantom_hu, ct_series, write_datasets
from viewer.loader import load_series


def _station(centre: tuple[float, float, float], slices: int, series: str, frame_of_reference: str) -> list:
    geometry = SeriesGeometry(rows=24, columns=32, slices=slices, slice_step=2.5, centre=centre)
    return list(ct_series(geometry, series_uid=series, frame_of_reference_uid=frame_of_reference))


def test_two_scout_tiles_at_one_position_load_as_two_stacks(tmp_path: Path) -> None:
    series, frame_of_reference = generate_uid(), generate_uid()
    datasets = _station((-40.0, 0.0, 0.0), 1, series, frame_of_reference) + _station(
        (40.0, 0.0, 0.0), 1, series, frame_of_reference
    )
    result = load_series(write_datasets(datasets, tmp_path))
    assert len(result.volumes) == 2
    origins_x = sorted(round(v.origin[0], 3) for v in result.volumes)
    assert origins_x == [-40.0 - 31.0, 40.0 - 31.0]  # centre - (columns - 1) / 2 * 2 mm
    assert any("shifted in-plane" in w for w in result.warnings)


def test_overlapping_stations_split_by_in_plane_origin_with_their_own_pixels(tmp_path: Path) -> None:
    series, frame_of_reference = generate_uid(), generate_uid()
    # left station z = -11.25..11.25, right station 12.5 mm higher: 5 shared slice positions
    left = _station((-40.0, 0.0, 0.0), 10, series, frame_of_reference)
    right = _station((40.0, 0.0, 12.5), 10, series, frame_of_reference)
    result = load_series(write_datasets(left + right, tmp_path))
    assert len(result.volumes) == 2
    for volume in result.volumes:
        assert volume.voxels.shape == (10, 24, 32)
        assert not volume.metadata["geometry_corrected"]  # no false tilt from mixing the stations
        assert volume.spacing[2] == 2.5
        # every slice holds the phantom at its own place: compare with the analytic values
        k = np.arange(10)
        corner = volume.index_to_lps(np.stack([np.zeros(10), np.zeros(10), k], axis=1))
        centre = volume.index_to_lps(np.stack([np.full(10, 16.0), np.full(10, 12.0), k], axis=1))
        assert np.allclose(volume.voxels[:, 0, 0], ct_phantom_hu(corner))
        assert np.allclose(volume.voxels[:, 12, 16], ct_phantom_hu(centre))
    xs = sorted(round(v.origin[0]) for v in result.volumes)
    assert xs == [-71, 9]
