"""The header scan's pixel layout reads small attributes from their raw bytes; it must equal what
pydicom's own value conversion gives, for every byte order and VR encoding in pydicom's test files
(explicit/implicit little endian, explicit big endian, compressed, multi-frame, colour)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
import pytest

from viewer.decode import PixelLayout, pixel_layout

TEST_FILES = sorted((Path(pydicom.data.__file__).parent / "test_files").glob("*.dcm"))


def converted_layout(ds: pydicom.Dataset, offset: int | None) -> PixelLayout:
    """The layout from pydicom's converted values (the reference)."""
    bits_allocated = int(ds.BitsAllocated)
    return PixelLayout(
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        bits_allocated=bits_allocated,
        bits_stored=int(ds.get("BitsStored", bits_allocated) or bits_allocated),
        signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
        planar_configuration=int(ds.get("PlanarConfiguration", 0) or 0),
        transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian)),
        pixel_offset=offset,
    )


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
def test_raw_attribute_reads_equal_pydicom_conversion() -> None:
    compared = big_endian = 0
    for path in TEST_FILES:
        try:
            header = pydicom.dcmread(path, defer_size=2048)
            ours = pixel_layout(header)
        except Exception:  # noqa: BLE001, S112 - files pydicom cannot read, or that hold no image
            continue
        full = pydicom.dcmread(path)
        try:
            expected = converted_layout(full, ours.pixel_offset)
        except (AttributeError, ValueError, TypeError):
            continue
        assert ours == expected, path.name
        compared += 1
        big_endian += not header.original_encoding[1]
    assert compared >= 40 and big_endian >= 3  # the sample really covers the encodings


def test_zero_number_of_frames_means_one_frame(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm", download=False))
    ds.NumberOfFrames = 0
    ds.save_as(tmp_path / "zero.dcm")
    assert pixel_layout(pydicom.dcmread(tmp_path / "zero.dcm", defer_size=2048)).frames == 1


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "CT_small.dcm"])
def test_known_layouts(name: str) -> None:
    layout = pixel_layout(
        pydicom.dcmread(pydicom.data.get_testdata_file(name, download=False), defer_size=2048)
    )
    assert (
        (layout.rows, layout.columns, layout.bits_allocated, layout.frames) == (64, 64, 16, 1)
        if name.startswith("MR")
        else (128, 128, 16, 1)
    )
    assert layout.photometric == "MONOCHROME2" and layout.samples == 1
