"""Pixel spacing honesty: mm only where the file gives a trustworthy spacing, else px; Imager Pixel
Spacing is labelled "at detector"; ultrasound regions calibrate in cm -> mm."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from dicom_net.synthetic import radiograph, ultrasound_cine, write_datasets
from viewer.loader import load_series
from viewer.qt.slice_view import StackView
from viewer.tools import PIXELS, Calibration, measure, roi_stats
from viewer.volume import Volume


def _region(delta_x_cm: float, delta_y_cm: float, spatial_format: int = 1, units: int = 3) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = spatial_format
    r.RegionDataType = 1
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = 0, 0, 63, 47
    r.PhysicalUnitsXDirection = units
    r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = delta_x_cm
    r.PhysicalDeltaY = delta_y_cm
    return r


def _load(ds: Dataset, folder: Path) -> Volume:
    return load_series(write_datasets([ds], folder)).volumes[0]


def test_ultrasound_without_calibration_is_in_pixels(tmp_path: Path) -> None:
    result = load_series(write_datasets([ultrasound_cine(frames=4, rows=48, columns=64)], tmp_path))
    volume = result.volumes[0]
    assert volume.metadata["pixel_spacing_known"] is False
    assert volume.metadata["pixel_spacing_source"] is None
    assert volume.spacing == (1.0, 1.0, 1.0)
    assert any("distances and areas are in pixels" in w for w in result.warnings)


def test_ultrasound_region_deltas_in_cm_give_mm_spacing(tmp_path: Path) -> None:
    ds = ultrasound_cine(frames=4, rows=48, columns=64)
    # a spectral Doppler region (cm/s by seconds) first: it must not calibrate the image
    ds.SequenceOfUltrasoundRegions = [_region(0.5, 2.0, spatial_format=3, units=7), _region(0.02, 0.025)]
    volume = _load(ds, tmp_path)
    assert volume.metadata["pixel_spacing_known"] is True
    assert volume.metadata["pixel_spacing_source"] == "US regions"
    assert volume.spacing[:2] == pytest.approx((0.2, 0.25))  # (column, row) mm
    m = measure("length", [(0, 0), (30, 40)], volume.voxels[0, ..., 0], volume.spacing, (), MM_OF(volume))
    assert m.value == pytest.approx(math.hypot(30 * 0.2, 40 * 0.25))
    assert m.text() == "11.7 mm"


def test_uncalibrated_region_units_do_not_calibrate(tmp_path: Path) -> None:
    ds = ultrasound_cine(frames=2, rows=48, columns=64)
    ds.SequenceOfUltrasoundRegions = [_region(0.02, 0.02, units=0)]  # units "none"
    volume = _load(ds, tmp_path)
    assert volume.metadata["pixel_spacing_known"] is False


def test_imager_pixel_spacing_is_labelled_at_detector(tmp_path: Path) -> None:
    ds = radiograph(rows=120, columns=100, spacing=0.3)
    del ds.PixelSpacing
    volume = _load(ds, tmp_path / "imager")
    assert volume.metadata["pixel_spacing_source"] == "ImagerPixelSpacing (at detector, not calibrated)"
    assert volume.metadata["pixel_spacing_known"] is True
    m = measure("length", [(0, 0), (0, 100)], volume.voxels[0], volume.spacing, (), MM_OF(volume))
    assert m.text() == "30.0 mm (at detector)"
    calibrated = _load(radiograph(rows=120, columns=100, spacing=0.3), tmp_path / "calibrated")
    assert calibrated.metadata["pixel_spacing_source"] == "PixelSpacing"
    m = measure("length", [(0, 0), (0, 100)], calibrated.voxels[0], calibrated.spacing, (), MM_OF(calibrated))
    assert m.text() == "30.0 mm"


def test_secondary_capture_with_scanned_spacing_only_is_in_pixels(tmp_path: Path) -> None:
    ds = radiograph(rows=60, columns=50, spacing=0.3)
    del ds.PixelSpacing, ds.ImagerPixelSpacing
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.NominalScannedPixelSpacing = [0.1, 0.1]  # film digitiser: not the patient's scale
    volume = _load(ds, tmp_path)
    assert volume.metadata["pixel_spacing_known"] is False and volume.spacing[:2] == (1.0, 1.0)


def test_roi_in_pixels_has_no_mm_area() -> None:
    image = np.zeros((20, 20))
    image[2:12, 3:9] = 50
    stats = roi_stats(image, (3, 2), (8, 11), (0.5, 0.5), "rectangle", PIXELS)
    assert math.isnan(stats.area_mm2) and stats.area_px2 == pytest.approx(5 * 9)
    assert stats.mean == 50 and stats.pixel_count == 6 * 10
    m = measure("rectangle", [(3, 2), (8, 11)], image, (0.5, 0.5), (), PIXELS)
    assert m.text().endswith("area 45.0 px\N{SUPERSCRIPT TWO}")
    # spacing is ignored when unknown: a length counts pixels
    assert measure("length", [(0, 0), (3, 4)], image, (0.5, 0.5), (), PIXELS).text() == "5.0 px"


def MM_OF(volume: Volume) -> Calibration:  # noqa: N802 - reads as a unit in the asserts above
    from viewer.tools import calibration_from_metadata

    return calibration_from_metadata(volume.metadata)


def _flat_volume(known: bool, source: str | None = "PixelSpacing") -> Volume:
    return Volume(
        np.zeros((1, 100, 100), dtype=np.int16),
        (1.0, 1.0, 1.0),
        (0.0, 0.0, 0.0),
        metadata={
            "modality": "OT",
            "file_windows": [(100.0, 50.0, "")],
            "has_patient_geometry": False,
            "pixel_spacing_known": known,
            "pixel_spacing_source": source if known else None,
        },
    )


@pytest.mark.parametrize("known", [True, False])
def test_view_measures_in_px_and_hides_the_scale_bar_without_spacing(qtbot, known: bool) -> None:
    view = StackView()
    qtbot.addWidget(view)
    view.resize(400, 400)  # 100 px image fitted: 4 screen px per image pixel
    view.show()
    view.set_volume(_flat_volume(known))
    measured = []
    view.measurement_added.connect(measured.append)
    view.set_tool("length")
    QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(42, 42))  # pixel (10, 10)
    QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(162, 202))  # pixel (40, 50)
    assert measured[0].value == pytest.approx(50.0, abs=0.3)
    assert measured[0].text().endswith(" mm" if known else " px")
    assert view.describe()["pixel_spacing_known"] is known
    view.measurements.clear()
    rgb = view.render_to_array()
    # scale bar: a 1 px grey (230) ruler at x = width - 8 from y = height/2 + 20 down, antialiased over
    # the two columns beside x = 392 (the image is black there)
    ruler = rgb[200 + 24 : 200 + 60, 390:395, 0].astype(int).sum(axis=1)
    if known:
        assert (ruler >= 200).all()
    else:
        assert (ruler == 0).all()


def test_real_ultrasound_files_are_calibrated_from_their_regions() -> None:
    from pydicom.data import get_testdata_file

    # the 120-frame cine: one 2D region of 0.05104970559477806 cm per pixel
    cine = load_series([get_testdata_file("color3d_jpeg_baseline.dcm", download=False)]).volumes[0]
    assert cine.metadata["pixel_spacing_source"] == "US regions"
    assert cine.spacing[:2] == pytest.approx((0.5104970559477806, 0.5104970559477806))
    # a 2D region (0.0262 cm) and a waveform region (format 4, seconds by no unit) that is not used
    doppler = load_series([get_testdata_file("OBXXXX1A.dcm", download=False)]).volumes[0]
    assert doppler.spacing[:2] == pytest.approx((0.2622878766196998, 0.2622878766196998))
    # JPEG 2000 ultrasound without regions or spacing: pixels only
    bare = load_series([get_testdata_file("US1_J2KR.dcm", download=False)]).volumes[0]
    assert bare.metadata["pixel_spacing_known"] is False
