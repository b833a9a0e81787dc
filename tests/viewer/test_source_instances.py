"""A plane index or LPS point maps to the acquired instance it shows (key images, AI slice links),
also where the index no longer follows the files: feet-first series (axial index 0 = feet, the
last file acquired) and tilted/irregular series resampled onto a new grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_net.synthetic import DEFAULT_MARKERS, SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_series
from viewer.reslice import plane_image, plane_point, plane_positions
from viewer.sources import source_at_lps, source_for_plane

FEET_FIRST_SUPINE = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # slice normal points to the feet
HEAD = next(m for m in DEFAULT_MARKERS if m.lps[2] > 0)  # the marker on the head side


def _files_by_uid(paths: list[Path]) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in paths)}


def _hu_at(ds: pydicom.Dataset, lps: tuple[float, float, float]) -> float:
    """Value of the source file's own pixel under an LPS point (its own geometry, rescaled)."""
    ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    rel = np.asarray(lps) - ipp
    col = int(round(rel @ iop[:3] / float(ds.PixelSpacing[1])))
    row = int(round(rel @ iop[3:] / float(ds.PixelSpacing[0])))
    return float(ds.pixel_array[row, col]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_feet_first_axial_index_maps_to_the_instance_at_that_height(tmp_path: Path) -> None:
    geometry = SeriesGeometry(rows=40, columns=48, orientation=FEET_FIRST_SUPINE, slices=36, slice_step=2.5)
    paths = write_datasets(ct_series(geometry), tmp_path)
    files = _files_by_uid(paths)
    volume = load_series(paths).volumes[0]
    positions = plane_positions(volume, "axial")
    assert positions[0] < positions[-1]  # index 0 is the feet end ...
    uids = volume.metadata["sop_instance_uids"]
    assert float(files[uids[0]].ImagePositionPatient[2]) > float(files[uids[-1]].ImagePositionPatient[2])
    for index in range(len(positions)):  # ... while voxel slice 0 is the head end
        src = source_for_plane(volume, "axial", index)
        assert src is not None
        assert float(files[src.sop_instance_uid].ImagePositionPatient[2]) == pytest.approx(positions[index])
        assert src.distance_mm == pytest.approx(0.0, abs=1e-6)
        assert Path(src.path) == Path(files[src.sop_instance_uid].filename) and src.frame == 0
    # the axial plane showing the head marker comes from a file that holds that marker
    index = int(np.argmin(np.abs(positions - HEAD.lps[2])))
    assert plane_image(volume, "axial", index=index).pixels.max() == HEAD.value
    assert _hu_at(files[source_for_plane(volume, "axial", index).sop_instance_uid], HEAD.lps) == HEAD.value
    assert source_for_plane(volume, "coronal", 10) is None  # a reformat rests on every slice
    # the native plane keeps the voxel order
    assert source_for_plane(volume, "native", 0).sop_instance_uid == uids[0]


def test_tilted_irregular_series_maps_resampled_planes_to_the_nearest_acquired_slice(tmp_path: Path) -> None:
    # gantry tilt (origins drift 0.2 mm in y per mm in z) and one 3.5 mm gap among 2.5 mm steps
    zs = [2.5 * i for i in range(14)] + [35.0 + 1.0 + 2.5 * i for i in range(14)]
    zs = [z - 30.0 for z in zs]
    positions = [(-47.0, -39.0 + 0.2 * z, z) for z in zs]
    geometry = SeriesGeometry(rows=40, columns=48, positions=positions)
    paths = write_datasets(ct_series(geometry, gantry_tilt=11.3), tmp_path)
    files = _files_by_uid(paths)
    volume = load_series(paths).volumes[0]
    assert volume.metadata["geometry_corrected"]
    assert volume.metadata["sop_instance_uids"] == []  # voxel slices are interpolated
    acquired_z = np.asarray(zs)
    gaps = []
    for index, z in enumerate(plane_positions(volume, "axial")):
        src = source_for_plane(volume, "axial", index)
        assert src is not None
        nearest = float(acquired_z[np.argmin(np.abs(acquired_z - z))])
        assert float(files[src.sop_instance_uid].ImagePositionPatient[2]) == pytest.approx(nearest)
        assert src.distance_mm == pytest.approx(abs(nearest - z), abs=1e-6)
        gaps.append(src.distance_mm)
    assert max(gaps) == pytest.approx(1.0, abs=1e-6)  # planes after the gap sit 1 mm from a slice
    # a point picked on screen maps to the instance holding it
    src = source_at_lps(volume, HEAD.lps)
    assert _hu_at(files[src.sop_instance_uid], HEAD.lps) == HEAD.value
    point, normal = plane_point(volume, "axial", index=0)
    assert normal @ (0.0, 0.0, 1.0) == pytest.approx(1.0)
    assert (
        source_at_lps(volume, point).sop_instance_uid == source_for_plane(volume, "axial", 0).sop_instance_uid
    )


def test_frames_without_patient_geometry_map_one_to_one(tmp_path: Path) -> None:
    from dicom_net.synthetic import ultrasound_cine

    path = write_datasets([ultrasound_cine(frames=6, rows=32, columns=40)], tmp_path)[0]
    volume = load_series([path]).volumes[0]
    src = source_for_plane(volume, "native", 4)
    assert (src.path, src.frame, src.distance_mm) == (str(path), 4, 0.0)
    assert src.sop_instance_uid == str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert json.loads(json.dumps(src.as_dict()))["frame"] == 4  # plain data for links and the report
    assert source_for_plane(volume, "native", 6) is None
    assert source_at_lps(volume, (0.0, 0.0, 0.0)) is None
