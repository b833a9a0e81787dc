"""A strict structural walk of a Part-10 file: every element, item and fragment, exactly once.

:func:`scan_part10` is the door of the archive: an object it accepts is one that pydicom and
DCMTK read completely and alike. It walks the raw bytes (tag, VR, length) in the encoding the
File Meta transfer syntax declares, into every sequence and item (defined or undefined length)
and every encapsulated pixel data fragment, and raises :class:`MalformedDataset` with the reason
on anything a reader would have to guess about: another VR encoding than declared, a value or
item running past its container, a container whose content ends short of its length, a
delimiter with a length, bytes after the last element, elements out of order or twice,
binary values whose length does not fit their VR, encapsulated pixel data without fragments or
with an offset table that does not point at them. Deflated datasets are inflated and walked.

It returns where each top-level element's value is; values are not decoded here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 32
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_VALUE_SIZE = {
    b"US": 2, b"SS": 2, b"OW": 2, b"UL": 4, b"SL": 4, b"FL": 4, b"AT": 4, b"OF": 4, b"OL": 4,
    b"FD": 8, b"SV": 8, b"UV": 8, b"OD": 8, b"OV": 8,
}  # fmt: skip
_ILLEGAL_GROUPS = frozenset((0x0000, 0x0001, 0x0002, 0x0003, 0x0005, 0x0007, 0xFFFF))


class MalformedDataset(ValueError):
    """The bytes are not one unambiguous DICOM object; the message says where and why."""


@dataclass
class ScanResult:
    meta: dict[int, bytes]  # group-0002 element -> value
    dataset: bytes  # the file's bytes, or the inflated dataset for deflated syntaxes; offsets refer to it
    elements: dict[int, tuple[bytes | None, int, int]]  # tag -> (VR or None, value offset, length)
    little_endian: bool
    explicit_vr: bool
    transfer_syntax: UID


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> bytes | None:
    """The public dictionary's VR of a tag (b'SQ', b'US', ...; first choice of 'US or SS'), or None."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    if " or " in vr:  # US or SS, OB or OW, US or SS or OW: only the shared value size matters
        sizes = {_VALUE_SIZE.get(v.encode(), 1) for v in vr.split(" or ")}
        return vr.split(" or ")[0].encode() if len(sizes) == 1 else b"OB"
    return vr.encode()


def _looks_explicit(data: bytes, pos: int) -> bool:
    """pydicom's test for explicit VR at the start of a dataset: two capital letters after the tag."""
    return pos + 6 <= len(data) and 0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B


class _Walker:
    def __init__(self, data: bytes, little: bool, start: int) -> None:
        self.data = data
        self.start = start  # where the dataset begins in ``data``
        self.little = little
        self.tag_len = struct.Struct("<HHI" if little else ">HHI")
        self.tag_vr_len = struct.Struct("<HH2sH" if little else ">HH2sH")
        self.u32 = struct.Struct("<I" if little else ">I")

    def fail(self, pos: int, why: str) -> MalformedDataset:
        return MalformedDataset(f"{why} at byte {pos - self.start} of the dataset")

    def dataset(self, pos: int, end: int, explicit: bool, depth: int, top: dict | None = None) -> int:
        """Walk the elements of a dataset or item from ``pos``.

        ``end`` is where a defined-length item ends (or the end of the data at top level); an
        undefined-length item (``top`` is None and ``end`` < 0) ends at its Item Delimitation Item.
        Returns the position after the dataset.
        """
        data = self.data
        limit = len(data) if end < 0 else end
        last = -1
        while pos < limit:
            if pos + 8 > limit:
                if top is not None:
                    raise self.fail(pos, f"{limit - pos} bytes after the last element")
                raise self.fail(pos, "an element header runs past the end of its container")
            if explicit:
                group, element, vr, short_length = self.tag_vr_len.unpack_from(data, pos)
            else:
                group, element, length = self.tag_len.unpack_from(data, pos)
                vr = None
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == _ITEM_END and end < 0 and top is None:
                    if self.u32.unpack_from(data, pos + 4)[0] != 0:
                        raise self.fail(pos, "Item Delimitation Item with a non-zero length")
                    return pos + 8
                raise self.fail(
                    pos, f"item or delimiter tag ({group:04X},{element:04X}) where an element belongs"
                )
            if group in _ILLEGAL_GROUPS:
                if tag == 0 and top is not None:  # zero bytes appended to the data
                    raise self.fail(pos, "bytes after the last element (reading as (0000,0000))")
                raise self.fail(pos, f"element ({group:04X},{element:04X}) in the dataset")
            if tag <= last:
                raise self.fail(pos, f"element ({group:04X},{element:04X}) out of order or repeated")
            last = tag
            if explicit:
                if vr not in _VRS:
                    raise self.fail(pos, f"element ({group:04X},{element:04X}) has no valid VR")
                if vr in _LONG_VRS:
                    if pos + 12 > limit:
                        raise self.fail(pos, "an element header runs past the end of its container")
                    length = self.u32.unpack_from(data, pos + 8)[0]
                    value = pos + 12
                else:
                    length = short_length
                    value = pos + 8
                kind = vr
                if vr == b"UN" and length < 0xFFFF and not group & 1:
                    kind = _dictionary_vr(tag) or vr  # pydicom reads such a value by its dictionary VR
            else:
                value = pos + 8
                kind = None
                if not group & 1:  # private tags stay opaque, public ones have the dictionary's VR
                    kind = _dictionary_vr(tag) if element else b"UL"
                    if kind is None:
                        raise self.fail(
                            pos, f"({group:04X},{element:04X}) is no known tag: implicit VR hides its VR"
                        )
            if length == UNDEFINED:
                pos = self._undefined(tag, kind, value, explicit, depth, pos)
                if top is not None:
                    top[tag] = (vr, value, UNDEFINED)
                continue
            after = value + length
            if after > limit:
                raise self.fail(
                    pos, f"value of ({group:04X},{element:04X}) runs past the end of its container"
                )
            size = _VALUE_SIZE.get(kind)  # type: ignore[arg-type]
            if size and length % size:
                raise self.fail(
                    pos, f"({group:04X},{element:04X}) has {length} bytes, not a multiple of {size}"
                )
            if kind == b"SQ" and length:
                un = vr == b"UN"  # PS3.5 6.2.2: a sequence sent as UN is in implicit VR
                self.sequence(value, after, explicit and not un, depth + 1, un=un)
            if top is not None:
                top[tag] = (vr, value, length)
            pos = after
        if end < 0 and top is None:
            raise self.fail(pos, "undefined-length item without its Item Delimitation Item")
        return pos

    def _undefined(
        self, tag: int, kind: bytes | None, value: int, explicit: bool, depth: int, pos: int
    ) -> int:
        """Walk an undefined-length value; returns the position after its Sequence Delimitation Item."""
        if tag == PIXEL_DATA and kind in (b"OB", b"OW"):  # at the top or in an icon image item
            return self.fragments(value)
        if kind == b"SQ":
            return self.sequence(value, -1, explicit, depth + 1)
        if explicit and kind == b"UN" and self.little:  # PS3.5 6.2.2: items in implicit VR little endian
            return self.sequence(value, -1, False, depth + 1, un=True)
        if not explicit and kind is None:  # private or unknown tag: only a sequence may be undefined
            return self.sequence(value, -1, False, depth + 1)
        raise self.fail(
            pos, f"undefined length on ({tag >> 16:04X},{tag & 0xFFFF:04X}), which is no sequence"
        )

    def sequence(self, pos: int, end: int, explicit: bool, depth: int, un: bool = False) -> int:
        """Walk the items of a sequence; ``end`` < 0 for undefined length (up to its delimiter)."""
        if depth > _MAX_DEPTH:
            raise self.fail(pos, "sequences nested too deeply")
        data = self.data
        limit = len(data) if end < 0 else end
        while True:
            if end >= 0 and pos == end:
                return pos
            if pos + 8 > limit:
                raise self.fail(pos, "sequence runs past the end of its container")
            group, element, length = self.tag_len.unpack_from(data, pos)
            tag = group << 16 | element
            if tag == _SEQ_END and end < 0:
                if length:
                    raise self.fail(pos, "Sequence Delimitation Item with a non-zero length")
                return pos + 8
            if tag != _ITEM:
                raise self.fail(pos, f"({group:04X},{element:04X}) where a sequence item belongs")
            start = pos + 8
            if un and _looks_explicit(data, start):
                raise self.fail(start, "item of an undefined-length UN sequence looks explicit VR")
            if length == UNDEFINED:
                pos = self.dataset(start, -1, explicit, depth)
            else:
                item_end = start + length
                if item_end > limit:
                    raise self.fail(pos, "sequence item runs past the end of its container")
                if self.dataset(start, item_end, explicit, depth, top=None) != item_end:
                    raise self.fail(pos, "sequence item length disagrees with its content")
                pos = item_end

    def fragments(self, pos: int) -> int:
        """Walk encapsulated pixel data: offset table, fragments, Sequence Delimitation Item."""
        data = self.data
        starts: list[int] = []
        table: tuple[int, ...] | None = None
        first = pos  # after the offset table: where the offsets count from
        while True:
            if pos + 8 > len(data):
                raise self.fail(pos, "encapsulated pixel data without its Sequence Delimitation Item")
            group, element, length = self.tag_len.unpack_from(data, pos)
            tag = group << 16 | element
            if tag == _SEQ_END:
                if length:
                    raise self.fail(pos, "Sequence Delimitation Item with a non-zero length")
                break
            if tag != _ITEM or length == UNDEFINED:
                raise self.fail(pos, "encapsulated pixel data item is not a defined-length fragment")
            if pos + 8 + length > len(data):
                raise self.fail(pos, "pixel data fragment runs past the end of the data")
            if table is None:
                if length % 4:
                    raise self.fail(pos, "Basic Offset Table length is not a multiple of 4")
                table = struct.unpack_from(("<" if self.little else ">") + f"{length // 4}I", data, pos + 8)
                first = pos + 8 + length
            else:
                starts.append(pos - first)
            pos += 8 + length
        if not starts:
            raise self.fail(pos, "encapsulated pixel data without a fragment")
        if table:
            known = set(starts)
            if any(b <= a for a, b in zip(table, table[1:])) or not all(offset in known for offset in table):
                raise self.fail(first, "Basic Offset Table does not point at fragment starts")
        return pos + 8


def _layout(ts: UID) -> tuple[bool, bool, bool]:
    """(little endian, explicit VR, deflated) of a transfer syntax pydicom and DCMTK know."""
    try:
        return ts.is_little_endian, not ts.is_implicit_VR, ts.is_deflated
    except ValueError:
        raise MalformedDataset(f"unknown transfer syntax {ts}") from None


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        inflated = inflater.decompress(body)
    except zlib.error as exc:
        raise MalformedDataset("deflated dataset does not inflate") from exc
    # After the stream: a pad byte, or the CRC-32 and size some writers keep from gzip (both toolkits skip them).
    if not inflater.eof or len(inflater.unused_data) > 8:
        raise MalformedDataset("deflated dataset is cut short or followed by other bytes")
    return inflated


def read_meta(data: bytes) -> tuple[dict[int, bytes], int]:
    """The File Meta group of a Part-10 file (element -> value) and where the dataset starts."""
    if len(data) < 144 or data[128:132] != b"DICM":
        raise MalformedDataset("not a DICOM Part-10 stream (no DICM prefix)")
    meta: dict[int, bytes] = {}
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        element, vr = struct.unpack_from("<H2s", data, pos + 2)
        if vr not in _VRS:
            raise MalformedDataset("file meta element without a valid VR")
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise MalformedDataset("file meta element runs past the end of the data")
            length, value = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        else:
            length, value = struct.unpack_from("<H", data, pos + 6)[0], pos + 8
        if length == UNDEFINED or value + length > len(data):
            raise MalformedDataset("file meta element runs past the end of the data")
        meta[element] = data[value : value + length]
        pos = value + length
    return meta, pos


def scan_part10(data: bytes) -> ScanResult:
    """Walk a complete Part-10 file; raise :class:`MalformedDataset` unless it is well formed."""
    meta, pos = read_meta(data)
    group_length = meta.get(0x0000)
    if group_length is not None and (
        len(group_length) != 4 or 144 + struct.unpack("<I", group_length)[0] != pos
    ):
        raise MalformedDataset("File Meta Information Group Length disagrees with the file meta")
    ts = UID(meta.get(0x0010, b"").decode("ascii", "replace").rstrip("\0 "))
    if not ts:
        raise MalformedDataset("file meta has no Transfer Syntax UID")
    little, explicit, deflated = _layout(ts)
    body, start = (_inflate(data[pos:]), 0) if deflated else (data, pos)
    if start == len(body):
        raise MalformedDataset("dataset has no elements")
    if _looks_explicit(body, start) != explicit:
        raise MalformedDataset(
            f"dataset is encoded in {'explicit' if not explicit else 'implicit'} VR, "
            f"its transfer syntax says {'explicit' if explicit else 'implicit'}"
        )
    elements: dict[int, tuple[bytes | None, int, int]] = {}
    walker = _Walker(body, little, start)
    try:
        walker.dataset(start, len(body), explicit, 0, top=elements)
    except struct.error as exc:  # a header cut short inside a container
        raise MalformedDataset("an element header runs past the end of the data") from exc
    return ScanResult(meta, body, elements, little, explicit, ts)
