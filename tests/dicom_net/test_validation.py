"""The door's checks: each structural fault is refused, sound objects pass, fields match pydicom."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_net import validation
from dicom_net.part10 import file_meta_header
from dicom_net.validation import HeaderInfo, InvalidDataset, inspect_part10
from tests.dicom_net.dicom_fuzz import with_references
from tests.dicom_net.dicom_objects import part10, sample_file, small_ct


def _sample_files() -> list[Path]:
    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for root in roots for p in root.glob("*.dcm"))


def _outcome(fn, data: bytes):
    try:
        return fn(data)
    except InvalidDataset as exc:
        return type(exc).__name__


def _ctwith_references(syntax: str = ExplicitVRLittleEndian, defined: bool = True) -> bytes:
    ds = with_references(small_ct(1, rows=16)[0], defined)
    ds.file_meta.TransferSyntaxUID = syntax
    return part10(ds)


def _refusal(data: bytes) -> str:
    with pytest.raises(InvalidDataset) as refused:
        inspect_part10(data)
    return str(refused.value)


@pytest.mark.parametrize(
    ("declared", "actual"),
    [(ImplicitVRLittleEndian, ExplicitVRLittleEndian), (ExplicitVRLittleEndian, ImplicitVRLittleEndian)],
)
def test_a_dataset_encoded_otherwise_than_its_transfer_syntax_says_is_refused(
    declared: str, actual: str
) -> None:
    data = _ctwith_references(actual)
    assert "VR" in _refusal(_relabel(data, actual, declared))
    assert inspect_part10(data).sop_instance_uid  # the same bytes under their own syntax are fine


def _relabel(data: bytes, old: str, new: str) -> bytes:
    """The same dataset bytes under a File Meta header that declares another transfer syntax."""
    (meta_length,) = struct.unpack_from("<I", data, 140)
    values = {}
    pos = 144
    while pos < 144 + meta_length:
        element, vr, length = struct.unpack_from("<H2sH", data, pos + 2)
        values[element] = data[pos + 8 : pos + 8 + length].rstrip(b"\0").decode()
        pos += 12 + struct.unpack_from("<I", data, pos + 8)[0] if vr == b"OB" else 8 + length
    assert values[0x0010] == old
    return file_meta_header(values[0x0002], values[0x0003], new) + data[144 + meta_length :]


@pytest.mark.parametrize("delta", [-2, -1, 1, 2, 8])
def test_an_encapsulated_fragment_whose_length_is_off_is_refused(delta: int) -> None:
    data = bytearray(sample_file("JPEG2000.dcm").read_bytes())
    inspect_part10(bytes(data))
    pixel = data.rindex(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff")
    table = pixel + 12
    fragment = table + 8 + struct.unpack_from("<I", data, table + 4)[0]
    assert data[fragment : fragment + 4] == b"\xfe\xff\x00\xe0"
    struct.pack_into("<I", data, fragment + 4, struct.unpack_from("<I", data, fragment + 4)[0] + delta)
    assert "fragment" in _refusal(bytes(data)) or "Delimitation" in _refusal(bytes(data))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("delta", [8, -2])
def test_a_defined_length_item_disagreeing_with_its_content_is_refused(
    syntax: str, level: int, delta: int
) -> None:
    data = bytearray(_ctwith_references(syntax, defined=True))
    inspect_part10(bytes(data))
    little = syntax != ExplicitVRBigEndian
    item_tag = b"\xfe\xff\x00\xe0" if little else b"\xff\xfe\xe0\x00"
    items = [i for i in range(len(data)) if data.startswith(item_tag, i)]
    assert len(items) == 4  # two referenced images, each with one purpose-of-reference code
    at = items[level] + 4  # level 0: a ReferencedImageSequence item, 1: the code item nested in it
    fmt = "<I" if little else ">I"
    struct.pack_into(fmt, data, at, struct.unpack_from(fmt, data, at)[0] + delta)
    assert "item" in _refusal(bytes(data)) or "container" in _refusal(bytes(data))


@pytest.mark.parametrize("tail", [b"\0" * 8, b"\0" * 2, b"\x01", b"\xfc\xff\xfc\xff"])
def test_bytes_after_the_last_element_are_refused(tail: bytes) -> None:
    data = part10(small_ct(1, rows=16)[0])
    inspect_part10(data)
    _refusal(data + tail)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("StudyInstanceUID", "1.2.3.A4"),
        ("SeriesInstanceUID", "1." + "2" * 64),
        ("StudyInstanceUID", "1.2..3"),
        ("SeriesInstanceUID", "1.2.3 .4"),
    ],
)
def test_invalid_study_and_series_uids_are_refused(keyword: str, value: str) -> None:
    ds = small_ct(1, rows=16)[0]
    setattr(ds, keyword, value)
    assert "UID" in _refusal(part10(ds))


def test_an_invalid_sop_instance_uid_is_refused() -> None:
    ds = small_ct(1, rows=16)[0]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.840.x.5"
    assert "SOP Instance UID" in _refusal(part10(ds))


def test_a_repeated_element_and_an_unknown_character_set_are_refused() -> None:
    data = part10(small_ct(1, rows=16)[0])
    modality = data.index(b"\x08\x00\x60\x00CS")
    repeated = data[: modality + 10] + data[modality : modality + 10] + data[modality + 10 :]
    assert "repeated" in _refusal(repeated)
    ds = small_ct(1, rows=16)[0]
    ds.SpecificCharacterSet = "ISO_IR 1OO"
    assert "Character Set" in _refusal(part10(ds))


def test_every_accepted_sample_is_walked_without_pydicom() -> None:
    """Text in the plain character sets is decoded from the walk; pydicom parses only the rest."""
    parsed = 0
    real_dcmread = validation.dcmread
    try:

        def counting(*args, **kw):
            nonlocal parsed
            parsed += 1
            return real_dcmread(*args, **kw)

        validation.dcmread = counting
        accepted = sum(
            isinstance(_outcome(inspect_part10, p.read_bytes()), HeaderInfo) for p in _sample_files()
        )
    finally:
        validation.dcmread = real_dcmread
    assert accepted > 50 and parsed < 0.3 * accepted


def test_fields_match_what_pydicom_reads() -> None:
    for path in _sample_files():
        data = path.read_bytes()
        try:
            info = inspect_part10(data)
        except InvalidDataset:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert info.sop_instance_uid == ds.SOPInstanceUID, path.name
        assert info.patient_name == str(ds.get("PatientName", "")).strip(), path.name
        assert info.rows == int(ds.get("Rows", 0) or 0) and info.columns == int(ds.get("Columns", 0) or 0)
        assert info.frames == int(ds.get("NumberOfFrames", 1) or 1), path.name


def test_every_cut_of_an_image_is_refused() -> None:
    data = part10(small_ct(1, rows=64)[0])
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(132, len(data)), 300)):
        with pytest.raises(InvalidDataset):
            inspect_part10(data[:cut])
    assert inspect_part10(data).rows == 64


def test_an_unknown_public_tag_is_refused_in_implicit_vr_only() -> None:
    """pydicom cannot tell the VR of an unknown tag without an explicit one (it warns, guesses UN)."""
    ds = small_ct(1, rows=16)[0]
    ds.add_new(0x000810F3, "LO", "unknown")
    assert inspect_part10(part10(ds)).rows == 16  # explicit VR says what it is
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert "no known tag" in _refusal(part10(ds))
