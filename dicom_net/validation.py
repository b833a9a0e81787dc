"""Strict checks of a DICOM object before it may enter the archive.

:func:`inspect_part10` walks a complete Part-10 file's bytes once
(:func:`dicom_net.header_scan.scan_part10`: every element, item and fragment, no pixel decoding)
and returns the few attributes the archive index needs. It raises :class:`InvalidDataset`, with
a reason fit for a C-STORE Error Comment, for anything that must not be stored: bytes pydicom
and DCMTK would not both read completely and alike, missing, invalid or disagreeing UIDs, and
pixel data whose length disagrees with rows/columns/bits/frames.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicom_net.header_scan import MalformedDataset, ScanResult, scan_part10

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel, Float Pixel, Double Float Pixel
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # components of digits (leading zeros exist in real data)


def is_valid_uid(uid: str) -> bool:
    """Digits in dot-separated components, at most 64 characters (padding already removed)."""
    return len(uid) <= 64 and _UID.fullmatch(uid) is not None


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


_SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


class _NeedsPydicom(Exception):
    """A value the raw decoder does not handle; the pydicom path decides."""


class _Fields:
    """The index attributes, decoded straight from the raw element bytes.

    pydicom's value conversion costs ~40 µs per element, more than the rest of a received
    object's checks; anything unusual (other character sets, odd lengths, undefined-length
    values) is read from ``fallback()``, the dataset as pydicom parses it.
    """

    def __init__(
        self, lookup, encoding: str | None, little_endian: bool, fallback: Callable[[], Dataset]
    ) -> None:
        self.lookup = lookup  # tag -> (VR or None, raw bytes) | None when absent; may raise _NeedsPydicom
        self.encoding = encoding
        self.uint16 = struct.Struct("<H" if little_endian else ">H")
        self.fallback = fallback  # the dataset as pydicom reads it (built on first use)

    def _pydicom(self, kind: str, keyword: str) -> object:
        ds = self.fallback()
        return _text(ds, keyword) if kind == "text" else _int(ds, keyword)

    def uid(self, tag: int, keyword: str) -> str:
        """A UI value with its trailing padding removed, nothing else (invalid ones stay invalid)."""
        try:
            found = self.lookup(tag)
        except _NeedsPydicom:
            return self._pydicom("text", keyword)  # type: ignore[return-value]
        return "" if found is None else found[1].decode("ascii", "replace").rstrip("\0 ")

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


def _checked_charset(element: tuple[str | None, bytes] | None) -> str:
    """The Specific Character Set value; raises unless every term is one pydicom knows."""
    if element is None:
        return ""
    vr, raw = element
    name = raw.decode("ascii", "replace").strip(" \0")
    if vr not in (None, "CS", "UN") or any(
        term.strip(" \0") not in python_encoding for term in name.split("\\")
    ):
        raise InvalidDataset("Specific Character Set is not a defined term")
    return name


def _charset_encoding(charset: object) -> str | None:
    return _SIMPLE_CHARSETS.get(charset.strip()) if isinstance(charset, str) else None


_US_KEYWORDS = {"Rows", "Columns", "BitsAllocated", "SamplesPerPixel"}


def expected_pixel_bytes(
    rows: int, columns: int, samples: int, frames: int, bits_allocated: int, photometric: str = ""
) -> int:
    """Bytes of native (uncompressed) pixel data that rows/columns/samples/bits/frames call for."""
    if photometric == "YBR_FULL_422" and samples == 3:
        return rows * columns * 2 * frames * bits_allocated // 8  # two samples per pixel after subsampling
    return (rows * columns * samples * frames * bits_allocated + 7) // 8


def _check_pixels(scan: ScanResult, fields: _Fields, compressed: bool) -> None:
    """Pixel data must be encapsulated exactly when the syntax compresses, and of the right size."""
    for tag in PIXEL_DATA_TAGS:
        found = scan.elements.get(tag)
        if found is None:
            continue
        length = found[2]
        if compressed:
            if length != UNDEFINED_LENGTH:
                raise InvalidDataset("compressed transfer syntax but pixel data is not encapsulated", 0xA900)
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
    try:
        scan = scan_part10(data)
    except MalformedDataset as exc:
        raise InvalidDataset(str(exc)) from None
    compressed = scan.transfer_syntax.is_compressed  # a syntax the walk knows
    body, elements = scan.dataset, scan.elements

    def lookup(tag: int) -> tuple[str | None, bytes] | None:
        found = elements.get(tag)
        if found is None:
            return None
        vr, offset, length = found
        if length == UNDEFINED_LENGTH:
            raise _NeedsPydicom(tag)
        return (vr.decode("ascii") if vr else None), body[offset : offset + length]

    parsed: list[Dataset] = []

    def pydicom_dataset() -> Dataset:
        if not parsed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the walk already decided what is fatal
                parsed.append(dcmread(io.BytesIO(data), stop_before_pixels=True))
        return parsed[0]

    charset = lookup(0x00080005) if 0x00080005 in elements else None
    charset_name = _checked_charset(charset)
    encoding = None if "\\" in charset_name else _charset_encoding(charset_name)
    fields = _Fields(lookup, encoding, scan.little_endian, pydicom_dataset)

    def meta_uid(element: int) -> str:
        return scan.meta.get(element, b"").decode("ascii", "replace").rstrip("\0 ")

    try:
        return _header_info(
            fields,
            scan,
            compressed=compressed,
            meta_class=meta_uid(0x0002),
            meta_instance=meta_uid(0x0003),
            expected_sop_class=expected_sop_class,
            expected_sop_instance=expected_sop_instance,
        )
    except InvalidDataset:
        raise
    except Exception as exc:  # an attribute pydicom cannot decode
        raise InvalidDataset(f"unreadable attributes: {type(exc).__name__}") from exc


# Bulk data elements: an object with Rows/Columns must carry one, else it was cut short.
_BULK_DATA_TAGS = (*PIXEL_DATA_TAGS, 0x56000020, 0x00420011)  # + Spectroscopy Data, Encapsulated Document


def _is_image_class(sop_class: str) -> bool:
    name = UID(sop_class).name
    return "Image Storage" in name and "Presentation State" not in name


def _header_info(
    f: _Fields,
    scan: ScanResult,
    *,
    compressed: bool,
    meta_class: str,
    meta_instance: str,
    expected_sop_class: str | None,
    expected_sop_instance: str | None,
) -> HeaderInfo:
    sop_class = f.uid(0x00080016, "SOPClassUID")
    sop_instance = f.uid(0x00080018, "SOPInstanceUID")
    study_uid = f.uid(0x0020000D, "StudyInstanceUID")
    series_uid = f.uid(0x0020000E, "SeriesInstanceUID")
    for name, value in (
        ("SOP Class", sop_class),
        ("SOP Instance", sop_instance),
        ("Study Instance", study_uid),
        ("Series Instance", series_uid),
    ):
        if not value:
            raise InvalidDataset(f"no {name} UID")
        if not is_valid_uid(value):
            raise InvalidDataset(f"invalid {name} UID (digits and dots, at most 64)")
    if meta_class and meta_class != sop_class:
        raise UIDMismatch("SOP Class UID differs between file meta and dataset")
    if meta_instance and meta_instance != sop_instance:
        raise UIDMismatch("SOP Instance UID differs between file meta and dataset")
    if expected_sop_class is not None and expected_sop_class != sop_class:
        raise UIDMismatch("dataset SOP Class UID differs from the command's Affected SOP Class UID")
    if expected_sop_instance is not None and expected_sop_instance != sop_instance:
        raise UIDMismatch("dataset SOP Instance UID differs from the command's Affected SOP Instance UID")
    if not any(tag in scan.elements for tag in _BULK_DATA_TAGS) and (
        (0x00280010 in scan.elements and 0x00280011 in scan.elements) or _is_image_class(sop_class)
    ):
        raise InvalidDataset("an image without pixel data: the object is cut short")
    try:
        _check_pixels(scan, f, compressed)
    except InvalidDataset:
        raise
    except Exception as exc:
        raise InvalidDataset(f"unreadable image attributes: {type(exc).__name__}") from exc
    return HeaderInfo(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study_uid,
        series_uid=series_uid,
        transfer_syntax=str(scan.transfer_syntax),
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
