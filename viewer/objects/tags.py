"""Every element of a DICOM instance as rows for a tag browser (nested sequences, private tags).

Values are shown to the user only (these rows are never logged). Private elements carry their
creator (the Private Creator element of their block); long values are shortened for display.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset
from pydicom.dataelem import DataElement

MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class TagRow:
    depth: int  # 0 for top-level elements, +1 inside each sequence item
    tag: str  # "(0010,0010)"
    name: str  # keyword or "Private tag", "Item 1" for sequence items
    vr: str
    value: str
    private_creator: str = ""
    is_item: bool = False


def _value_text(element: DataElement) -> str:
    if element.VR == "SQ":
        return f"{len(element.value)} item(s)"
    if element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or element.tag == 0x7FE00010:
        length = len(element.value) if element.value is not None else 0
        return f"<{length} bytes>"
    text = str(element.value) if element.value is not None else ""
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _creator(ds: Dataset, element: DataElement) -> str:
    if not element.tag.is_private or element.tag.element < 0x1000:
        return ""
    block = element.tag.element >> 8
    creator = ds.get((element.tag.group << 16) | block)
    return str(creator.value) if creator is not None else "(no creator)"


def tag_rows(ds: Dataset, depth: int = 0) -> list[TagRow]:
    """All elements (file meta first when present), sequences expanded item by item."""
    rows: list[TagRow] = []
    meta = getattr(ds, "file_meta", None) if depth == 0 else None
    for source in ([meta] if meta else []) + [ds]:
        for element in source:
            tag = f"({element.tag.group:04X},{element.tag.element:04X})"
            creator = _creator(source, element)
            name = element.keyword or ("Private tag" if element.tag.is_private else element.name)
            if (
                element.tag.is_private
                and element.tag.element >= 0x1000
                and element.name != "Private tag Data"
            ):
                name = element.name
            rows.append(TagRow(depth, tag, name, element.VR, _value_text(element), creator))
            if element.VR == "SQ":
                for number, item in enumerate(element.value, start=1):
                    rows.append(TagRow(depth + 1, "", f"Item {number}", "", "", is_item=True))
                    rows.extend(tag_rows(item, depth + 2))
    return rows


def filter_rows(rows: list[TagRow], text: str) -> list[TagRow]:
    """Rows whose tag, name, value or creator contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    if not needle:
        return rows
    return [
        row
        for row in rows
        if needle in row.tag.lower()
        or needle in row.name.lower()
        or needle in row.value.lower()
        or needle in row.private_creator.lower()
    ]
