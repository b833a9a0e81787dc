"""Cheap, strict checks of a received DICOM object before it may enter the archive.

:func:`inspect_part10` parses a complete Part-10 file's bytes once (pydicom, no pixel decoding)
and returns the few attributes the archive index needs. It raises :class:`InvalidDataset` for
anything that must not be stored: unparsable or truncated data, missing or disagreeing UIDs, and
uncompressed pixel data whose length disagrees with rows/columns/bits/frames.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel, Float Pixel, Double Float Pixel
_SEQUENCE_DELIMITER_LE = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_SEQUENCE_DELIMITER_BE = struct.pack(">HHI", 0xFFFE, 0xE0DD, 0)
_ITEM_TAG_LE = struct.pack("<HH", 0xFFFE, 0xE000)
_ITEM_TAG_BE = struct.pack(">HH", 0xFFFE, 0xE000)


class ArchiveError(Exception):
    """Base of every error that keeps an object out of the archive."""


class InvalidDataset(ArchiveError):
    """The bytes are not a complete, self-consistent DICOM object. ``status`` is the C-STORE status."""

    def __init__(self, message: str, status: int = 0xC210) -> None:
        super().__init__(message)
        self.status = status


class UIDMismatch(InvalidDataset):
    """The dataset's SOP Class/Instance UID disagrees with the command set or the file meta."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=0xA900)


class PixelLengthMismatch(InvalidDataset):
    """Uncompressed pixel data whose length disagrees with rows/columns/bits/frames."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=0xA900)


@dataclass(frozen=True)
class HeaderInfo:
    """What the archive index keeps about one instance (PHI fields included: never log them)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    study_description: str
    accession: str
    referring_physician: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    instance_number: int | None
    frames: int
    rows: int
    columns: int


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # undecodable value in a descriptive field: keep the object, drop the field
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except Exception:
        return None


def _raw(ds: Dataset, tag: int) -> RawDataElement | None:
    if tag not in ds:
        return None
    elem = ds.get_item(tag)
    return elem if isinstance(elem, RawDataElement) else None


_SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _Fields:
    """The index attributes, decoded straight from the raw element bytes.

    pydicom's value conversion costs ~40 µs per element, more than the rest of a received
    object's checks; anything unusual (other character sets, odd lengths, converted
    elements) falls back to it.
    """

    def __init__(self, ds: Dataset, little_endian: bool) -> None:
        self.ds = ds
        self.uint16 = struct.Struct("<H" if little_endian else ">H")
        charset = ds.get("SpecificCharacterSet", "")  # pydicom has converted it while reading
        self.encoding = _SIMPLE_CHARSETS.get(charset.strip()) if isinstance(charset, str) else None

    def _raw_bytes(self, tag: int) -> bytes | None:
        elem = _raw(self.ds, tag)
        return None if elem is None or elem.value is None else bytes(elem.value)

    def text(self, tag: int, keyword: str) -> str:
        raw = self._raw_bytes(tag)
        if raw is None:
            return (
                ""
                if tag not in self.ds or not isinstance(self.ds.get_item(tag), RawDataElement)
                else _text(self.ds, keyword)
            )
        if self.encoding or (raw.isascii() and b"\x1b" not in raw):
            return raw.decode(self.encoding or "ascii", "replace").strip(" \0")
        return _text(self.ds, keyword)

    def number(self, tag: int, keyword: str) -> int | None:
        """An IS (integer string) or US value."""
        raw = self._raw_bytes(tag)
        if raw is None:
            return _int(self.ds, keyword) if tag in self.ds else None
        elem = _raw(self.ds, tag)
        if elem is not None and (elem.VR == "US" or (elem.VR is None and keyword in _US_KEYWORDS)):
            return self.uint16.unpack(raw)[0] if len(raw) == 2 else _int(self.ds, keyword)
        try:
            text = raw.decode("ascii").strip(" \0")
            return int(text) if text else None
        except ValueError:
            return _int(self.ds, keyword)


_US_KEYWORDS = {"Rows", "Columns", "BitsAllocated", "SamplesPerPixel"}


def _check_complete(ds: Dataset, data_len: int, little_endian: bool, deflated: bool, data: bytes) -> None:
    """Raise unless the last top-level element ends exactly where the bytes end."""
    tags = list(ds.keys())
    if not tags:
        raise InvalidDataset("dataset has no elements")
    if deflated:
        return  # positions refer to the inflated stream; pydicom's inflate already failed on truncation
    last = ds.get_item(tags[-1])
    if not isinstance(last, RawDataElement):
        return
    if last.length == UNDEFINED_LENGTH:
        delimiter = _SEQUENCE_DELIMITER_LE if little_endian else _SEQUENCE_DELIMITER_BE
        if not data.endswith(delimiter):
            raise InvalidDataset("truncated: undefined-length element without its delimiter")
        return
    end = last.value_tell + last.length
    if end != data_len or (last.value is not None and len(last.value) != last.length):
        raise InvalidDataset(f"truncated or trailing bytes: last element ends at {end}, data has {data_len}")


def expected_pixel_bytes(
    rows: int, columns: int, samples: int, frames: int, bits_allocated: int, photometric: str = ""
) -> int:
    """Bytes of native (uncompressed) pixel data that rows/columns/samples/bits/frames call for."""
    if photometric == "YBR_FULL_422" and samples == 3:
        return rows * columns * 2 * frames * bits_allocated // 8  # two samples per pixel after subsampling
    return (rows * columns * samples * frames * bits_allocated + 7) // 8


def _check_pixels(ds: Dataset, fields: _Fields, compressed: bool, little_endian: bool) -> None:
    for tag in PIXEL_DATA_TAGS:
        elem = _raw(ds, tag)
        if elem is None:
            continue
        if compressed:
            if elem.length != UNDEFINED_LENGTH or elem.value is None:
                raise InvalidDataset("compressed transfer syntax but pixel data is not encapsulated", 0xA900)
            item = _ITEM_TAG_LE if little_endian else _ITEM_TAG_BE
            if not bytes(elem.value[:4]) == item:
                raise InvalidDataset("encapsulated pixel data does not start with an item", 0xA900)
            continue
        if elem.length == UNDEFINED_LENGTH:
            raise PixelLengthMismatch("native transfer syntax with encapsulated pixel data")
        rows, columns = fields.number(0x00280010, "Rows"), fields.number(0x00280011, "Columns")
        if rows is None or columns is None:
            raise PixelLengthMismatch("pixel data without Rows/Columns")
        bits = {0x7FE00008: 32, 0x7FE00009: 64}.get(tag) or fields.number(0x00280100, "BitsAllocated") or 0
        if bits not in (1, 8, 16, 32, 64):
            raise PixelLengthMismatch(f"unsupported Bits Allocated {bits}")
        samples = fields.number(0x00280002, "SamplesPerPixel") or 1
        frames = fields.number(0x00280008, "NumberOfFrames") or 1
        photometric = fields.text(0x00280004, "PhotometricInterpretation")
        expected = expected_pixel_bytes(rows, columns, samples, frames, bits, photometric)
        if elem.length not in (expected, expected + (expected & 1)):
            raise PixelLengthMismatch(f"pixel data has {elem.length} bytes, attributes call for {expected}")


def inspect_part10(
    data: bytes,
    *,
    expected_sop_class: str | None = None,
    expected_sop_instance: str | None = None,
) -> HeaderInfo:
    """Validate a complete Part-10 file's bytes and return its index attributes.

    ``expected_*`` are the command set's Affected SOP Class/Instance UIDs when the object came
    over the network; they must agree with the dataset and the file meta.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on odd values; we decide what is fatal
        return _inspect(data, expected_sop_class, expected_sop_instance)


def _inspect(data: bytes, expected_sop_class: str | None, expected_sop_instance: str | None) -> HeaderInfo:
    if len(data) < 132 + 12 or data[128:132] != b"DICM":
        raise InvalidDataset("not a DICOM Part-10 stream (no DICM prefix)")
    try:
        ds = dcmread(io.BytesIO(data), force=False)
    except Exception as exc:  # pydicom raises many types on garbage
        raise InvalidDataset(f"unparsable dataset: {type(exc).__name__}") from exc
    meta = ds.file_meta
    ts = UID(str(meta.get("TransferSyntaxUID", "") or ""))
    if not ts:
        raise InvalidDataset("file meta has no Transfer Syntax UID")
    try:
        little_endian = ts.is_little_endian
        compressed = ts.is_compressed
        deflated = ts.is_deflated
    except ValueError as exc:
        raise InvalidDataset(f"unknown transfer syntax {ts}") from exc
    _check_complete(ds, len(data), little_endian, deflated, data)
    f = _Fields(ds, little_endian)
    sop_class = f.text(0x00080016, "SOPClassUID")
    sop_instance = f.text(0x00080018, "SOPInstanceUID")
    study_uid = f.text(0x0020000D, "StudyInstanceUID")
    series_uid = f.text(0x0020000E, "SeriesInstanceUID")
    for name, value in (
        ("SOP Class", sop_class),
        ("SOP Instance", sop_instance),
        ("Study Instance", study_uid),
        ("Series Instance", series_uid),
    ):
        if not value or len(value) > 64:
            raise InvalidDataset(f"missing or invalid {name} UID")
    meta_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
    meta_instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    if meta_class and meta_class != sop_class:
        raise UIDMismatch("SOP Class UID differs between file meta and dataset")
    if meta_instance and meta_instance != sop_instance:
        raise UIDMismatch("SOP Instance UID differs between file meta and dataset")
    if expected_sop_class is not None and expected_sop_class != sop_class:
        raise UIDMismatch("dataset SOP Class UID differs from the command's Affected SOP Class UID")
    if expected_sop_instance is not None and expected_sop_instance != sop_instance:
        raise UIDMismatch("dataset SOP Instance UID differs from the command's Affected SOP Instance UID")
    try:
        _check_pixels(ds, f, compressed, little_endian)
    except InvalidDataset:
        raise
    except Exception as exc:
        raise InvalidDataset(f"unreadable image attributes: {type(exc).__name__}") from exc
    return HeaderInfo(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study_uid,
        series_uid=series_uid,
        transfer_syntax=str(ts),
        patient_name=f.text(0x00100010, "PatientName"),
        patient_id=f.text(0x00100020, "PatientID"),
        birth_date=f.text(0x00100030, "PatientBirthDate"),
        sex=f.text(0x00100040, "PatientSex"),
        study_date=f.text(0x00080020, "StudyDate"),
        study_time=f.text(0x00080030, "StudyTime"),
        study_description=f.text(0x00081030, "StudyDescription"),
        accession=f.text(0x00080050, "AccessionNumber"),
        referring_physician=f.text(0x00080090, "ReferringPhysicianName"),
        modality=f.text(0x00080060, "Modality"),
        series_number=f.number(0x00200011, "SeriesNumber"),
        series_description=f.text(0x0008103E, "SeriesDescription"),
        body_part=f.text(0x00180015, "BodyPartExamined"),
        instance_number=f.number(0x00200013, "InstanceNumber"),
        frames=f.number(0x00280008, "NumberOfFrames") or 1,
        rows=f.number(0x00280010, "Rows") or 0,
        columns=f.number(0x00280011, "Columns") or 0,
    )
