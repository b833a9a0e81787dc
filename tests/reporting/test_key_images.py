"""Key images reference the acquired instance the radiologist saw, also for resampled series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from app.assistant.chat import ScreenContext
from app.reporting.key_images import capture_key_image
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_series
from viewer.reslice import plane_positions


def _tilted_series(folder: Path) -> list[Path]:
    """A gantry-tilted axial series: slices step along z with a small y shift (resampled on load)."""
    geometry = SeriesGeometry(
        rows=64, columns=64, pixel_spacing=(4.0, 4.0), slices=40, step_vector=(0.0, 0.35, 2.5)
    )
    return write_datasets(ct_series(geometry, gantry_tilt=8.0), folder)


def test_key_image_of_a_resampled_series_names_the_nearest_acquired_instance(tmp_path: Path) -> None:
    files = _tilted_series(tmp_path / "ct")
    volume = load_series(files).volumes[0]
    assert volume.metadata.get("sop_instance_uids") in ([], None)  # resampled: voxel slices are new
    positions = plane_positions(volume, "axial")
    index = int(np.argmin(np.abs(np.asarray(positions) - 40.0)))  # the axial plane through z = 40 mm
    ctx = ScreenContext(study_uid="1.2", series_uid=str(volume.metadata.get("series_uid", "")), volume=volume)
    key, pixels = capture_key_image(ctx, "axial", index, (400.0, 40.0))
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    assert key is not None
    referenced = pydicom.dcmread(key.path, stop_before_pixels=True)
    assert referenced.SOPInstanceUID == key.sop_instance_uid
    # the referenced slice is the acquired one nearest to the displayed plane
    nearest = min(
        files,
        key=lambda p: abs(
            float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) - positions[index]
        ),
    )
    assert key.path == str(nearest)


def test_coronal_reformat_of_axial_slices_has_no_instance_reference(tmp_path: Path) -> None:
    files = write_datasets(ct_series(SeriesGeometry(rows=32, columns=32, slices=16)), tmp_path / "ct")
    volume = load_series(files).volumes[0]
    ctx = ScreenContext(study_uid="1.2", series_uid="1.3", volume=volume)
    key, _ = capture_key_image(ctx, "coronal", 10, None)
    assert key is None
