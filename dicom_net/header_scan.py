"""A fast structural walk of a Part-10 file: where each top-level element is, and nothing more.

:func:`dicom_net.validation.inspect_part10` uses it to check received objects without building
a pydicom Dataset. It only accepts what it fully understands: anything unusual (deflate,
undefined-length UN, odd item structure, truncation) returns ``None`` and the caller falls
back to pydicom, which also phrases the error when an object is really broken.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LE_TS = {"1.2.840.10008.1.2": False, "1.2.840.10008.1.2.1": True}  # implicit / explicit little endian


class _Unsupported(Exception):
    pass


@dataclass
class ScanResult:
    meta: dict[int, bytes]  # group-0002 element -> value
    elements: dict[int, tuple[bytes | None, int, int]]  # tag -> (VR or None, value offset, length)
    little_endian: bool
    explicit_vr: bool


def _transfer_syntax_layout(ts: str) -> tuple[bool, bool]:
    """(little_endian, explicit_vr) for a transfer syntax, by the DICOM encoding rules."""
    if ts in _LE_TS:
        return True, _LE_TS[ts]
    if ts == "1.2.840.10008.1.2.2":
        return False, True
    if ts == "1.2.840.10008.1.2.1.99" or ts.startswith("1.2.840.10008.1.2.1."):
        raise _Unsupported("deflated or unknown explicit-LE variant")
    if ts.startswith("1.2.840.10008.1.2."):
        return True, True  # every compressed (encapsulated) syntax is explicit VR little endian
    raise _Unsupported("private transfer syntax")


class _Walker:
    def __init__(self, data: bytes, little: bool, explicit: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.tag_len = struct.Struct("<HHI" if little else ">HHI")
        self.tag_vr = struct.Struct("<HH2s" if little else ">HH2s")
        self.u16 = struct.Struct("<H" if little else ">H")
        self.u32 = struct.Struct("<I" if little else ">I")

    def element(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR, value offset, length) of the element at ``pos``."""
        data = self.data
        if pos + 8 > len(data):
            raise _Unsupported("truncated element header")
        if not self.explicit:
            group, elem, length = self.tag_len.unpack_from(data, pos)
            return (group << 16) | elem, None, pos + 8, length
        group, elem, vr = self.tag_vr.unpack_from(data, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:  # item and delimiter tags carry no VR
            return tag, None, pos + 8, self.u32.unpack_from(data, pos + 4)[0]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise _Unsupported("truncated element header")
            return tag, vr, pos + 12, self.u32.unpack_from(data, pos + 8)[0]
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Unsupported("not a VR")
        return tag, vr, pos + 8, self.u16.unpack_from(data, pos + 6)[0]

    def skip_undefined(self, pos: int) -> int:
        """Skip the items of an undefined-length sequence or encapsulated pixel data."""
        while True:
            if pos + 8 > len(self.data):
                raise _Unsupported("truncated item")
            group, elem, length = self.tag_len.unpack_from(self.data, pos)
            tag = (group << 16) | elem
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise _Unsupported("not an item")
            pos = self.skip_item_dataset(pos) if length == UNDEFINED else pos + length
            if pos > len(self.data):
                raise _Unsupported("truncated item")

    def skip_item_dataset(self, pos: int) -> int:
        while True:
            tag, vr, value, length = self.element(pos)
            if tag == _ITEM_END:
                return value
            if length == UNDEFINED:
                if vr == b"UN":
                    raise _Unsupported("undefined-length UN")
                pos = self.skip_undefined(value)
            else:
                pos = value + length
            if pos > len(self.data):
                raise _Unsupported("truncated value")


def scan_part10(data: bytes) -> ScanResult | None:
    """Element positions of a complete Part-10 file, or None when pydicom should look instead."""
    try:
        return _scan(data)
    except (_Unsupported, struct.error, IndexError, UnicodeDecodeError):
        return None


def _scan(data: bytes) -> ScanResult:
    if len(data) < 144 or data[128:132] != b"DICM":
        raise _Unsupported("no DICM prefix")
    meta_walker = _Walker(data, True, True)
    meta: dict[int, bytes] = {}
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        tag, _vr, value, length = meta_walker.element(pos)
        if length == UNDEFINED or value + length > len(data):
            raise _Unsupported("odd file meta")
        meta[tag & 0xFFFF] = data[value : value + length]
        pos = value + length
    ts = meta.get(0x0010, b"").decode("ascii").rstrip("\0 ")
    little, explicit = _transfer_syntax_layout(ts)
    walker = _Walker(data, little, explicit)
    elements: dict[int, tuple[bytes | None, int, int]] = {}
    last_tag = -1
    while pos < len(data):
        tag, vr, value, length = walker.element(pos)
        if tag <= last_tag or tag >> 16 == 0xFFFE:
            raise _Unsupported("elements out of order")
        last_tag = tag
        if length == UNDEFINED:
            if vr == b"UN":
                raise _Unsupported("undefined-length UN")
            end = walker.skip_undefined(value)
            elements[tag] = (vr, value, UNDEFINED)
        else:
            end = value + length
            if end > len(data):
                raise _Unsupported("truncated value")
            elements[tag] = (vr, value, length)
        pos = end
    if not elements:
        raise _Unsupported("empty dataset")
    return ScanResult(meta, elements, little, explicit)
