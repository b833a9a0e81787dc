"""One odd object in a series folder is left out with a reason; the rest of the series loads.

Each odd object is put beside a 5-slice phantom, in the same series where it could be mistaken
for a slice (one slice step beyond the last): if it were loaded, the volume would have 6 slices.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from app.cli.main import main
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import LoadError, load_series
from viewer.object_kinds import object_kind

GEOMETRY = SeriesGeometry(rows=48, columns=40, slices=5, slice_step=2.0)


def phantom(folder: Path) -> list[pydicom.Dataset]:
    files = write_datasets(ct_series(GEOMETRY), folder)
    slices = [pydicom.dcmread(f) for f in files]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def extra_slice(slices: list[pydicom.Dataset]) -> pydicom.Dataset:
    """A copy of the last slice one step further along, as a new instance of the same series."""
    ds = pydicom.dcmread(slices[-1].filename)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 2.0]
    return ds


def write_seg(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    mask = np.zeros((len(slices), GEOMETRY.rows, GEOMETRY.columns), dtype=bool)
    mask[1:4, 10:20, 12:30] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=slices,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=slices[0].SeriesInstanceUID,  # even in the image series it stays out
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=99,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    assert seg.BitsAllocated == 1 and "PixelData" in seg
    seg.save_as(folder / "seg.dcm")
    return folder / "seg.dcm"


def write_modality_lut_empty_item(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    ds = extra_slice(slices)
    ds.ModalityLUTSequence = [Dataset()]
    ds.save_as(folder / "lut.dcm")
    return folder / "lut.dcm"


def write_frames_1a(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    ds = extra_slice(slices)
    ds.NumberOfFrames = "11"
    ds.save_as(folder / "frames.dcm", enforce_file_format=True)
    raw = (folder / "frames.dcm").read_bytes()
    element = b"\x28\x00\x08\x00IS\x02\x0011"  # (0028,0008) IS "11", explicit VR little endian
    assert raw.count(element) == 1
    (folder / "frames.dcm").write_bytes(raw.replace(element, element[:-2] + b"1A"))
    return folder / "frames.dcm"


def write_truncated_j2k(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    ds = extra_slice(slices)
    ds.compress(JPEG2000Lossless)
    ds.save_as(folder / "cut.dcm")
    raw = (folder / "cut.dcm").read_bytes()
    (folder / "cut.dcm").write_bytes(raw[: len(raw) - len(ds.PixelData) // 2])  # cut inside the codestream
    return folder / "cut.dcm"


def _document(folder: Path, name: str, sop_class: str, modality: str) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), modality
    return ds


def write_sr(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    ds = _document(folder, "sr.dcm", BasicTextSRStorage, "SR")
    ds.ValueType, ds.ContentSequence = "CONTAINER", []
    ds.save_as(folder / "sr.dcm", enforce_file_format=True)
    return folder / "sr.dcm"


def write_pdf(folder: Path, slices: list[pydicom.Dataset]) -> Path:
    ds = _document(folder, "doc.dcm", EncapsulatedPDFStorage, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    ds.save_as(folder / "doc.dcm", enforce_file_format=True)
    return folder / "doc.dcm"


CASES = {
    "seg": (write_seg, "seg", "segmentation"),
    "modality-lut-empty-item": (write_modality_lut_empty_item, "unreadable", "Modality LUT"),
    "number-of-frames-1A": (write_frames_1a, "unreadable", "Number of Frames '1A'"),
    "truncated-j2k": (write_truncated_j2k, "unreadable", "truncated"),
    "sr": (write_sr, "sr", "structured report"),
    "pdf": (write_pdf, "pdf", "PDF"),
}


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")  # pydicom, on the cut file
@pytest.mark.parametrize("case", list(CASES))
def test_odd_object_is_skipped_and_the_series_loads(case: str, tmp_path: Path) -> None:
    writer, kind, words = CASES[case]
    slices = phantom(tmp_path)
    clean = load_series([tmp_path]).volumes[0]
    odd = writer(tmp_path, slices)
    result = load_series([tmp_path])
    (volume,) = result.volumes
    assert volume.voxels.shape == clean.voxels.shape == (5, GEOMETRY.rows, GEOMETRY.columns)
    assert np.array_equal(volume.voxels, clean.voxels)
    assert volume.origin == clean.origin and volume.spacing == clean.spacing
    assert [(s.path, s.kind) for s in result.skipped] == [(odd, kind)]
    assert words in result.skipped[0].reason
    assert any(odd.name in w and words in w for w in result.warnings)


def test_a_folder_of_odd_objects_only_is_a_clear_load_error(tmp_path: Path) -> None:
    slices = phantom(tmp_path / "images")
    write_seg(tmp_path, slices)
    write_sr(tmp_path, slices)
    with pytest.raises(LoadError, match=r"seg\.dcm: segmentation .*sr\.dcm: structured report"):
        load_series([tmp_path / "seg.dcm", tmp_path / "sr.dcm"])


def test_snapshot_cli_names_the_skipped_object_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slices = phantom(tmp_path)
    write_seg(tmp_path, slices)
    assert main(["snapshot", str(tmp_path), "--out", str(tmp_path / "a.png"), "--size", "64x64"]) == 0
    err = capsys.readouterr().err
    assert "seg.dcm: segmentation (SEG), not an image" in err and "Traceback" not in err
    only = tmp_path / "only"
    only.mkdir()
    (tmp_path / "seg.dcm").rename(only / "seg.dcm")
    assert main(["snapshot", str(only), "--out", str(tmp_path / "b.png"), "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert "seg.dcm: segmentation (SEG)" in err and "Traceback" not in err
    assert not (tmp_path / "b.png").exists()


@pytest.mark.parametrize(
    "sop_class, has_pixels, kind",
    [
        ("1.2.840.10008.5.1.4.1.1.2", True, "image"),  # CT
        ("1.2.840.10008.5.1.4.1.1.4.1", True, "image"),  # Enhanced MR
        ("1.2.840.10008.5.1.4.1.1.481.2", True, "image"),  # RT Dose: a dose grid
        ("1.2.840.10008.5.1.4.1.1.7", False, "image"),  # SC without pixels is a broken image
        ("1.2.840.10008.5.1.4.1.1.66.4", True, "seg"),  # SEG carries pixel data, still not an image
        ("1.2.840.10008.5.1.4.1.1.88.11", False, "sr"),
        ("1.2.840.10008.5.1.4.1.1.88.33", False, "sr"),
        ("1.2.840.10008.5.1.4.1.1.88.59", False, "kos"),
        ("1.2.840.10008.5.1.4.1.1.11.1", False, "pr"),  # GSPS
        ("1.2.840.10008.5.1.4.1.1.11.2", False, "pr"),  # colour PS
        ("1.2.840.10008.5.1.4.1.1.481.3", False, "rtstruct"),
        ("1.2.840.10008.5.1.4.1.1.481.5", False, "other-nonimage"),  # RT Plan
        ("1.2.840.10008.5.1.4.1.1.104.1", False, "pdf"),
        ("1.2.840.10008.5.1.4.1.1.104.2", False, "other-nonimage"),  # CDA
        ("1.2.840.10008.5.1.4.1.1.9.1.1", False, "other-nonimage"),  # ECG waveform
        ("1.2.840.10008.1.3.10", False, "other-nonimage"),  # DICOMDIR
        ("1.3.12.2.1107.5.9.1", False, "other-nonimage"),  # private Siemens non-image
        ("1.3.46.670589.11.0.0.12.4", True, "image"),  # private class holding pixels
    ],
)
def test_object_kind_by_sop_class(sop_class: str, has_pixels: bool, kind: str) -> None:
    assert object_kind(sop_class, has_pixels) == kind


def test_bare_data_set_without_preamble_loads_and_a_text_file_is_named(tmp_path: Path) -> None:
    """Older modalities write the data set without the Part 10 preamble and meta header (DCMTK and
    GDCM read it); a stray text file in the folder is left out as not DICOM."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    slices = phantom(tmp_path / "part10")
    expected = load_series([tmp_path / "part10"]).volumes[0]
    bare = tmp_path / "bare"
    bare.mkdir()
    for i, ds in enumerate(slices):
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_dataset(buffer, ds)
        (bare / f"IM{i:04d}").write_bytes(buffer.getvalue())
    (bare / "README.txt").write_text("exported by a modality\n" * 10)
    result = load_series([bare])
    (volume,) = result.volumes
    assert np.array_equal(volume.voxels, expected.voxels)
    assert volume.origin == expected.origin and volume.spacing == expected.spacing
    assert [(s.path.name, s.kind, s.reason) for s in result.skipped] == [
        ("README.txt", "unreadable", "not a DICOM file")
    ]
