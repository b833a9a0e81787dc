"""Geometry for every patient position and slice direction: prone, feet-first, negative tilt.

A patient lying prone or entering feet first changes Image Orientation (Patient) and the
direction the slice normal points; the display must stay radiological whatever the scanner
wrote (axial: patient left on image right, anterior up), and scrolling a standard plane must
step through the patient in one fixed direction (index 0 = feet / anterior / right) so the
same index means the same end of the body for every acquisition (the AI's 3D input relies on it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_net.synthetic import DEFAULT_MARKERS, SeriesGeometry, ct_series, write_datasets
from tests.viewer.test_loader_geometry import assert_markers_in_all_planes
from viewer.loader import load_series
from viewer.reslice import plane_image, plane_positions

# Image Orientation (Patient) scanners write for each patient position (rows along the table).
PATIENT_POSITIONS = {
    "HFS": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "HFP": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),  # prone: normal still +z (head)
    "FFS": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # feet first supine: normal -z (feet)
    "FFP": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),  # feet first prone: normal -z
}
RADIOLOGICAL = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "H", "bottom": "F"},
    "sagittal": {"left": "A", "right": "P", "top": "H", "bottom": "F"},
}


def _load(tmp_path: Path, geometry: SeriesGeometry, **kwargs: object):
    return load_series(write_datasets(ct_series(geometry, **kwargs), tmp_path))


@pytest.mark.parametrize("position", sorted(PATIENT_POSITIONS))
def test_every_patient_position_displays_radiologically(tmp_path: Path, position: str) -> None:
    geometry = SeriesGeometry(rows=80, columns=96, orientation=PATIENT_POSITIONS[position], slices=40)
    result = load_series(write_datasets(ct_series(geometry), tmp_path))
    volume = result.volumes[0]
    assert result.warnings == []
    assert_markers_in_all_planes(volume, geometry)
    for plane, labels in RADIOLOGICAL.items():
        assert plane_image(volume, plane).labels == labels, plane
    # the native (as acquired) plane is labelled from the file's own orientation
    native = plane_image(volume, "native").labels
    row, col = np.asarray(PATIENT_POSITIONS[position][:3]), np.asarray(PATIENT_POSITIONS[position][3:])
    assert native["right"] == {1.0: "L", -1.0: "R"}[float(row[0])]
    assert native["bottom"] == {1.0: "P", -1.0: "A"}[float(col[1])]


@pytest.mark.parametrize("position", sorted(PATIENT_POSITIONS))
def test_scroll_index_runs_feet_to_head_for_every_acquisition(tmp_path: Path, position: str) -> None:
    geometry = SeriesGeometry(rows=40, columns=48, orientation=PATIENT_POSITIONS[position], slices=40)
    volume = _load(tmp_path, geometry).volumes[0]
    for plane in ("axial", "coronal", "sagittal"):
        positions = plane_positions(volume, plane)
        assert np.all(np.diff(positions) > 0), (plane, positions[:3])
    # index 0 of the axial plane is the most inferior slice, the last one the most superior
    z = sorted(float(p[2]) for p in geometry.slice_positions())
    assert plane_image(volume, "axial", index=0).position_mm == pytest.approx(z[0])
    assert plane_image(volume, "axial", index=len(z) - 1).position_mm == pytest.approx(z[-1])
    head = plane_image(volume, "axial", 40.0)  # the head-side marker lies at z = 40
    row, col = head.from_lps(np.array([0.0, 0.0, 40.0]))
    assert head.pixels[round(row), round(col)] == 1000


def test_negative_gantry_tilt_is_corrected_the_right_way(tmp_path: Path) -> None:
    # the slice origins drift anteriorly (-y) as they step to the head: the mirror of the usual case
    geometry = SeriesGeometry(rows=80, columns=96, slices=50, step_vector=(0.0, -0.5, 2.5))
    result = _load(tmp_path, geometry, gantry_tilt=-11.31)
    volume = result.volumes[0]
    assert volume.metadata["geometry_corrected"] is True
    assert volume.metadata["tilt_degrees"] == pytest.approx(np.degrees(np.arctan(0.5 / 2.5)), abs=0.01)
    for marker in DEFAULT_MARKERS:
        i, j, k = np.rint(volume.lps_to_index(np.asarray(marker.lps))).astype(int)
        assert volume.voxels[k, j, i] == marker.value, marker
    assert_markers_in_all_planes(volume, geometry)
