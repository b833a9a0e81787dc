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

from dicom_net.header_scan import scan_part10

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


class _NeedsPydicom(Exception):
    """A value the raw decoder does not handle; the pydicom path decides."""


class _Fields:
    """The index attributes, decoded straight from the raw element bytes.

    pydicom's value conversion costs ~40 µs per element, more than the rest of a received
    object's checks; anything unusual (other character sets, odd lengths, values pydicom has
    already converted) goes to ``fallback`` (pydicom) or raises :class:`_NeedsPydicom`.
    """

    def __init__(self, lookup, encoding: str | None, little_endian: bool, fallback: Dataset | None) -> None:
        self.lookup = lookup  # tag -> (VR or None, raw bytes) | None when absent; may raise _NeedsPydicom
        self.encoding = encoding
        self.uint16 = struct.Struct("<H" if little_endian else ">H")
        self.fallback = fallback

    def lookup_present(self, tag: int) -> bool:
        try:
            return self.lookup(tag) is not None
        except _NeedsPydicom:
            return True

    def _pydicom(self, kind: str, keyword: str) -> object:
        if self.fallback is None:
            raise _NeedsPydicom(keyword)
        return _text(self.fallback, keyword) if kind == "text" else _int(self.fallback, keyword)

    def text(self, tag: int, keyword: str) -> str:
        try:
            found = self.lookup(tag)
        except _NeedsPydicom:
            return self._pydicom("text", keyword)  # type: ignore[return-value]
        if found is None:
            return ""
        raw = found[1]
        if self.encoding or (raw.isascii() and b"\x1b" not in raw):
            return raw.decode(self.encoding or "ascii", "replace").strip(" \0")
        return self._pydicom("text", keyword)  # type: ignore[return-value]

    def number(self, tag: int, keyword: str) -> int | None:
        """An IS (integer string) or US value."""
        try:
            found = self.lookup(tag)
        except _NeedsPydicom:
            return self._pydicom("int", keyword)  # type: ignore[return-value]
        if found is None:
            return None
        vr, raw = found
        if vr == "US" or (vr is None and keyword in _US_KEYWORDS):
            return self.uint16.unpack(raw)[0] if len(raw) == 2 else self._pydicom("int", keyword)  # type: ignore[return-value]
        try:
            text = raw.decode("ascii").strip(" \0")
            return int(text) if text else None
        except ValueError:
            return self._pydicom("int", keyword)  # type: ignore[return-value]


def _pydicom_lookup(ds: Dataset):
    def lookup(tag: int) -> tuple[str | None, bytes] | None:
        if tag not in ds:
            return None
        elem = ds.get_item(tag)
        if not isinstance(elem, RawDataElement) or elem.value is None:
            raise _NeedsPydicom(tag)
        return elem.VR, bytes(elem.value)

    return lookup


def _charset_encoding(charset: object) -> str | None:
    return _SIMPLE_CHARSETS.get(charset.strip()) if isinstance(charset, str) else None


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


def _check_pixels(pixel, fields: _Fields, compressed: bool, little_endian: bool) -> None:
    """``pixel(tag)`` gives (length, first four value bytes) of a pixel data element or None."""
    for tag in PIXEL_DATA_TAGS:
        found = pixel(tag)
        if found is None:
            continue
        length, head = found
        if compressed:
            if length != UNDEFINED_LENGTH:
                raise InvalidDataset("compressed transfer syntax but pixel data is not encapsulated", 0xA900)
            if head != (_ITEM_TAG_LE if little_endian else _ITEM_TAG_BE):
                raise InvalidDataset("encapsulated pixel data does not start with an item", 0xA900)
            continue
        if length == UNDEFINED_LENGTH:
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
        if length not in (expected, expected + (expected & 1)):
            raise PixelLengthMismatch(f"pixel data has {length} bytes, attributes call for {expected}")


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
    fast = _inspect_scanned(data, expected_sop_class, expected_sop_instance)
    if fast is not None:
        return fast
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on odd values; we decide what is fatal
        return _inspect(data, expected_sop_class, expected_sop_instance)


def _inspect_scanned(
    data: bytes, expected_sop_class: str | None, expected_sop_instance: str | None
) -> HeaderInfo | None:
    """The same checks on :func:`scan_part10`'s element map; None means: let pydicom decide."""
    scan = scan_part10(data)
    if scan is None:
        return None
    ts = UID(scan.meta.get(0x0010, b"").decode("ascii", "replace").rstrip("\0 "))
    try:
        compressed = ts.is_compressed
    except ValueError:
        return None
    elements = scan.elements

    def lookup(tag: int) -> tuple[str | None, bytes] | None:
        found = elements.get(tag)
        if found is None:
            return None
        vr, offset, length = found
        if length == UNDEFINED_LENGTH:
            raise _NeedsPydicom(tag)
        return (vr.decode("ascii") if vr else None), data[offset : offset + length]

    def pixel(tag: int) -> tuple[int, bytes] | None:
        found = elements.get(tag)
        return None if found is None else (found[2], data[found[1] : found[1] + 4])

    charset = lookup(0x00080005) if 0x00080005 in elements else None
    charset_name = charset[1].decode("ascii", "replace").strip(" \0") if charset else ""
    f = _Fields(
        lookup, None if "\\" in charset_name else _charset_encoding(charset_name), scan.little_endian, None
    )

    def meta_uid(element: int) -> str:
        return scan.meta.get(element, b"").decode("ascii", "replace").rstrip("\0 ")

    try:
        return _header_info(
            f,
            str(ts),
            meta_class=meta_uid(0x0002),
            meta_instance=meta_uid(0x0003),
            pixel=pixel,
            compressed=compressed,
            little_endian=scan.little_endian,
            expected_sop_class=expected_sop_class,
            expected_sop_instance=expected_sop_instance,
        )
    except (InvalidDataset, _NeedsPydicom):
        return None  # pydicom re-checks and words the error


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
    f = _Fields(_pydicom_lookup(ds), _charset_encoding(ds.get("SpecificCharacterSet", "")), little_endian, ds)
    return _header_info(
        f,
        str(ts),
        meta_class=str(meta.get("MediaStorageSOPClassUID", "") or ""),
        meta_instance=str(meta.get("MediaStorageSOPInstanceUID", "") or ""),
        pixel=lambda tag: _pydicom_pixel(ds, tag),
        compressed=compressed,
        little_endian=little_endian,
        expected_sop_class=expected_sop_class,
        expected_sop_instance=expected_sop_instance,
    )


def _pydicom_pixel(ds: Dataset, tag: int) -> tuple[int, bytes] | None:
    """(length, first 4 value bytes) of a pixel data element."""
    elem = _raw(ds, tag)
    if elem is None:
        return None
    return elem.length, bytes(elem.value[:4]) if elem.value is not None else b""


# Bulk data elements: an object with Rows/Columns must carry one, else it was cut short.
_BULK_DATA_TAGS = (*PIXEL_DATA_TAGS, 0x56000020, 0x00420011)  # + Spectroscopy Data, Encapsulated Document


def _is_image_class(sop_class: str) -> bool:
    name = UID(sop_class).name
    return "Image Storage" in name and "Presentation State" not in name


def _header_info(
    f: _Fields,
    ts: str,
    *,
    meta_class: str,
    meta_instance: str,
    pixel,
    compressed: bool,
    little_endian: bool,
    expected_sop_class: str | None,
    expected_sop_instance: str | None,
) -> HeaderInfo:
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
    if meta_class and meta_class != sop_class:
        raise UIDMismatch("SOP Class UID differs between file meta and dataset")
    if meta_instance and meta_instance != sop_instance:
        raise UIDMismatch("SOP Instance UID differs between file meta and dataset")
    if expected_sop_class is not None and expected_sop_class != sop_class:
        raise UIDMismatch("dataset SOP Class UID differs from the command's Affected SOP Class UID")
    if expected_sop_instance is not None and expected_sop_instance != sop_instance:
        raise UIDMismatch("dataset SOP Instance UID differs from the command's Affected SOP Instance UID")
    if not any(f.lookup_present(tag) for tag in _BULK_DATA_TAGS) and (
        (f.lookup_present(0x00280010) and f.lookup_present(0x00280011)) or _is_image_class(sop_class)
    ):
        raise InvalidDataset("an image without pixel data: the object is cut short")
    try:
        _check_pixels(pixel, f, compressed, little_endian)
    except InvalidDataset:
        raise
    except Exception as exc:
        raise InvalidDataset(f"unreadable image attributes: {type(exc).__name__}") from exc
    return HeaderInfo(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study_uid,
        series_uid=series_uid,
        transfer_syntax=ts,
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
