"""Real files from pydicom-data: compressed syntaxes, colour, multi-frame cine and Enhanced CT."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, convert_color_space, pixel_array

from viewer.decode import ybr_full_to_rgb
from viewer.loader import load_series
from viewer.reslice import plane_image


def data(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not installed (pydicom-data)")
    return str(path)


def voxels(name: str) -> np.ndarray:
    return load_series([data(name)]).volumes[0].voxels


@pytest.mark.parametrize(
    "reference, variants",
    [
        (
            "MR_small.dcm",
            [
                "MR_small_RLE.dcm",
                "MR_small_jpeg_ls_lossless.dcm",
                "MR_small_jp2klossless.dcm",
                "MR_small_bigendian.dcm",
                "MR_small_implicit.dcm",
            ],
        ),
        (
            "emri_small.dcm",
            [
                "emri_small_RLE.dcm",
                "emri_small_jpeg_2k_lossless.dcm",
                "emri_small_jpeg_ls_lossless.dcm",
                "emri_small_big_endian.dcm",
            ],
        ),
        ("693_UNCR.dcm", ["693_J2KR.dcm"]),
        ("US1_UNCR.dcm", ["US1_J2KR.dcm"]),  # RGB vs JPEG 2000 lossless YBR_RCT
        ("SC_rgb.dcm", ["SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"]),  # RLE, JPEG lossless
        ("SC_rgb_16bit.dcm", ["SC_rgb_rle_16bit.dcm"]),
        ("OBXXXX1A.dcm", ["OBXXXX1A_rle.dcm"]),  # palette colour
        ("JPEG2000_UNC.dcm", ["JPEG2000.dcm"]),
        ("RG3_UNCR.dcm", ["RG3_J2KR.dcm"]),
    ],
)
def test_lossless_variants_decode_to_the_same_values(reference: str, variants: list[str]) -> None:
    expected = voxels(reference)
    for name in variants:
        got = voxels(name)
        assert got.shape == expected.shape, name
        assert np.array_equal(got.astype(np.int64), expected.astype(np.int64)), name


def test_modality_values_match_pydicom_rescale() -> None:
    for name in ("CT_small.dcm", "693_UNCR.dcm", "MR_small.dcm"):
        ds = pydicom.dcmread(data(name))
        expected = apply_modality_lut(ds.pixel_array, ds)
        got = voxels(name)[0]
        assert np.array_equal(got, expected), name
        assert got.dtype == np.int16, name  # integral rescale stays integer


def test_palette_colour_is_expanded_to_rgb() -> None:
    ds = pydicom.dcmread(data("OBXXXX1A.dcm"))
    from pydicom.pixels import apply_color_lut

    expected = apply_color_lut(ds.pixel_array, ds)  # 16-bit LUT entries
    assert expected.dtype == np.uint16
    got = voxels("OBXXXX1A.dcm")[0]
    expected = (expected >> 8).astype(np.uint8)
    assert got.shape == (600, 800, 3) and np.array_equal(got, expected)


def test_ultrasound_cine_120_frames_rgb_with_timing() -> None:
    volume = load_series([data("color3d_jpeg_baseline.dcm")]).volumes[0]
    ds = pydicom.dcmread(data("color3d_jpeg_baseline.dcm"))
    assert volume.voxels.shape == (120, 480, 640, 3) and volume.voxels.dtype == np.uint8
    assert volume.metadata["has_patient_geometry"] is False
    for frame in (0, 59, 119):
        # YBR_FULL_422 JPEG -> RGB: identical to pydicom with the same JPEG decoder ...
        same_decoder = pixel_array(ds, index=frame, decoding_plugin="pylibjpeg")
        assert np.array_equal(volume.voxels[frame], same_decoder)
        # ... and within JPEG decoder tolerance (chroma upsampling) of an independent one (GDCM)
        other = pixel_array(ds, index=frame, decoding_plugin="gdcm").astype(int)
        diff = np.abs(volume.voxels[frame].astype(int) - other)
        assert diff.max() <= 8 and diff.mean() < 0.1
    step = float(ds.FrameTime)
    assert volume.frame_start_times_ms is not None and len(volume.frame_start_times_ms) == 120
    assert volume.frame_start_times_ms[1] == pytest.approx(step) and volume.frame_start_times_ms[
        -1
    ] == pytest.approx(119 * step)
    img = plane_image(volume, "native", index=59)
    assert np.array_equal(img.pixels, volume.voxels[59])
    with pytest.raises(ValueError, match="no patient geometry"):
        plane_image(volume, "axial")


def test_ybr_conversion_matches_pydicom() -> None:
    rng = np.random.default_rng(1)
    ybr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    ours = ybr_full_to_rgb(ybr).astype(int)
    theirs = convert_color_space(ybr, "YBR_FULL", "RGB").astype(int)
    assert np.abs(ours - theirs).max() <= 1
    assert np.mean(ours == theirs) > 0.999


def test_enhanced_ct_geometry_from_functional_groups() -> None:
    path = data("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    volume = load_series([path]).volumes[0]
    # Plane Orientation (-1,0,0 / 0,1,0): columns run to the patient's right, normal points to the feet,
    # so slices sort from z=-149 down to z=-159.
    assert np.allclose(volume.direction, [[-1, 0, 0], [0, 1, 0], [0, 0, -1]])
    assert volume.origin == pytest.approx((99.5, -301.5, -149.0))
    assert volume.spacing == pytest.approx((0.388672, 0.388672, 10.0))
    frames = {
        round(float(f.PlanePositionSequence[0].ImagePositionPatient[2])): i
        for i, f in enumerate(ds.PerFrameFunctionalGroupsSequence)
    }
    raw = ds.pixel_array
    assert np.array_equal(volume.voxels[0], raw[frames[-149]].astype(np.int32) - 1024)
    assert np.array_equal(volume.voxels[1], raw[frames[-159]].astype(np.int32) - 1024)
    # radiological axial display puts the patient's left on the right: columns are mirrored;
    # axial index 0 is the most inferior plane (z=-159, the second slice along this normal)
    axial = plane_image(volume, "axial", index=0)
    assert np.array_equal(axial.pixels, volume.voxels[1][:, ::-1])
    assert axial.labels == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert volume.metadata["file_windows"][0][:2] == (102.0, 49.0)


def test_rt_dose_frames_placed_by_grid_frame_offsets_and_scaled_to_gray() -> None:
    path = data("rtdose.dcm")
    ds = pydicom.dcmread(path)
    volume = load_series([path]).volumes[0]
    assert volume.metadata["has_patient_geometry"] is True
    assert volume.voxels.shape == (15, 10, 10)
    assert volume.origin == pytest.approx((189.43125, 199.43125, -761.87))
    assert volume.spacing == pytest.approx((10.0, 10.0, 5.0))  # Grid Frame Offset Vector steps of 5 mm
    assert np.allclose(volume.voxels, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_enhanced_multiframe_matches_its_classic_series(tmp_path, reverse: bool) -> None:
    """highdicom converts a classic phantom series into a Legacy Converted Enhanced CT (per-frame
    Plane Position, shared Plane Orientation / Pixel Measures / Pixel Value Transformation):
    the same volume must come out, whatever the frame order."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage
    from highdicom.uid import UID

    from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets

    oblique = (0.8660254, 0.5, 0.0, 0.0, 0.0, -1.0)  # coronal-ish, rotated 30 degrees about z
    geometry = SeriesGeometry(rows=40, columns=48, orientation=oblique, slices=16, slice_step=2.0)
    files = write_datasets(ct_series(geometry), tmp_path / "classic")
    datasets = sorted(
        (pydicom.dcmread(f) for f in files), key=lambda ds: int(ds.InstanceNumber), reverse=reverse
    )
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets,
        series_instance_uid=UID(),
        series_number=9,
        sop_instance_uid=UID(),
        instance_number=1,
    )
    assert "PerFrameFunctionalGroupsSequence" in enhanced
    enhanced.save_as(tmp_path / "enhanced.dcm")
    classic = load_series(files).volumes[0]
    multi = load_series([tmp_path / "enhanced.dcm"]).volumes[0]
    assert np.array_equal(multi.voxels, classic.voxels) and multi.voxels.dtype == np.int16
    assert np.allclose(multi.origin, classic.origin) and np.allclose(multi.direction, classic.direction)
    assert multi.spacing == pytest.approx(classic.spacing)


def test_malformed_enhanced_geometry_degrades_to_plain_frames_with_warning(tmp_path) -> None:
    import warnings

    from highdicom.legacy import LegacyConvertedEnhancedCTImage
    from highdicom.uid import UID

    from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
    from viewer.series import build_stacks, read_header

    files = write_datasets(ct_series(SeriesGeometry(rows=16, columns=16, slices=4)), tmp_path / "classic")
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files],
        series_instance_uid=UID(),
        series_number=9,
        sop_instance_uid=UID(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    header = read_header(tmp_path / "enhanced.dcm")
    with warnings.catch_warnings():  # a value no scanner should write, but some file will
        warnings.simplefilter("ignore")
        header.ds.PerFrameFunctionalGroupsSequence[2].FrameContentSequence[0].add_new(0x00209128, "UL", "abc")
    (stack,) = build_stacks([header])
    assert not stack.has_geometry and len(stack.frames) == 4
    assert "unreadable geometry" in stack.warnings[0]


def test_enhanced_per_frame_pixel_value_transformation_overrides_the_shared_one(tmp_path) -> None:
    """A frame's own Pixel Value Transformation (per-frame group) wins over the shared one; the
    other frame keeps the shared rescale (PS3.3 C.7.6.16.2.9)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(data("eCT_Supplemental.dcm"))
    own = Dataset()
    own.RescaleSlope, own.RescaleIntercept, own.RescaleType = "2", "-500", "HU"
    frame_at = {
        round(float(f.PlanePositionSequence[0].ImagePositionPatient[2])): i
        for i, f in enumerate(ds.PerFrameFunctionalGroupsSequence)
    }
    ds.PerFrameFunctionalGroupsSequence[frame_at[-159]].PixelValueTransformationSequence = Sequence([own])
    ds.save_as(tmp_path / "per_frame_rescale.dcm")
    raw = ds.pixel_array.astype(np.int32)
    volume = load_series([tmp_path / "per_frame_rescale.dcm"]).volumes[0]
    assert np.array_equal(volume.voxels[0], raw[frame_at[-149]] - 1024)  # shared: slope 1, -1024
    assert np.array_equal(volume.voxels[1], raw[frame_at[-159]] * 2 - 500)  # its own: slope 2, -500


def test_unit_follows_the_frames_rescale_type_and_unspecified_gives_none(tmp_path) -> None:
    """eCT_Supplemental is an rCBF perfusion map whose Pixel Value Transformation says Rescale Type
    "US" (unspecified): its values must not be labelled HU; a plain CT without Rescale Type is HU."""
    from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
    from viewer.qt.slice_view import modality_unit

    perfusion = load_series([data("eCT_Supplemental.dcm")]).volumes[0]
    assert perfusion.metadata["modality"] == "CT" and perfusion.metadata["rescale_type"] == ""
    assert modality_unit(perfusion.metadata) == ""
    datasets = list(ct_series(SeriesGeometry(rows=8, columns=8, slices=2)))
    for ds in datasets:
        del ds.RescaleType
    plain = load_series(write_datasets(datasets, tmp_path)).volumes[0]
    assert plain.metadata["rescale_type"] == "HU" and modality_unit(plain.metadata) == "HU"
    assert modality_unit({"modality": "CT"}) == "HU"  # metadata from elsewhere without the key
