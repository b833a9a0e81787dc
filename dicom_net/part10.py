"""Part-10 framing for received datasets: preamble, DICM and a File Meta group, encoded directly.

pynetdicom's ``Event.encoded_dataset(include_meta=True)`` builds the same header through a
pydicom Dataset, which costs more than the rest of our per-object work on a busy receiver.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

_PREFIX = b"\0" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def file_meta_header(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_aet: str = ""
) -> bytes:
    """Preamble + 'DICM' + an explicit-VR little-endian File Meta group for one object."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _padded(sop_class_uid, b"\0")),
            _element(0x0003, b"UI", _padded(sop_instance_uid, b"\0")),
            _element(0x0010, b"UI", _padded(transfer_syntax, b"\0")),
            _element(0x0012, b"UI", _padded(str(PYNETDICOM_IMPLEMENTATION_UID), b"\0")),
            _element(0x0013, b"SH", _padded(str(PYNETDICOM_IMPLEMENTATION_VERSION), b" ")),
            _element(0x0016, b"AE", _padded(source_aet.strip(), b" ")) if source_aet.strip() else b"",
        )
    )
    return _PREFIX + _element(0x0000, b"UL", struct.pack("<I", len(body))) + body
