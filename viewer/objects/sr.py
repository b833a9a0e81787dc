"""A DICOM Structured Report's content tree as plain data, for a readable view.

Works for any vendor's SR (Basic/Enhanced/Comprehensive, key object selections too): each content
item becomes an :class:`SrNode` with its relationship, concept name, value as text (codes with
their meaning, numbers with their unit, dates, person names, UIDs) and the images it references,
which a view can open. Items are read defensively: a malformed item becomes a node that says so,
it never stops the rest of the tree from showing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom import Dataset


@dataclass(frozen=True)
class ImageReference:
    sop_class_uid: str
    sop_instance_uid: str
    frames: tuple[int, ...] = ()


@dataclass
class SrNode:
    value_type: str  # CONTAINER, TEXT, CODE, NUM, IMAGE, ...
    relationship: str  # CONTAINS, HAS OBS CONTEXT, ... ("" for the root)
    concept: str  # concept name's meaning ("" when absent)
    value: str = ""
    references: list[ImageReference] = field(default_factory=list)
    children: list[SrNode] = field(default_factory=list)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SrNode]]:
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass
class SrDocument:
    title: str
    completion: str
    verification: str
    root: SrNode

    def lines(self) -> list[str]:
        """The tree as indented text lines (headings, "concept: value", image references)."""
        out = []
        for depth, node in self.root.walk():
            if node.concept and node.value:
                text = f"{node.concept}: {node.value}"
            else:
                text = node.concept or node.value or f"({node.value_type.lower() or 'item'})"
            for ref in node.references:
                frames = f" frames {','.join(map(str, ref.frames))}" if ref.frames else ""
                text += f" [image {ref.sop_instance_uid}{frames}]"
            out.append("  " * depth + text)
        return out

    def references(self) -> list[ImageReference]:
        return [ref for _, node in self.root.walk() for ref in node.references]


def _meaning(item: Dataset, keyword: str) -> str:
    seq = item.get(keyword)
    if not seq:
        return ""
    code = seq[0]
    return str(code.get("CodeMeaning", "") or code.get("CodeValue", ""))


def _code_text(code: Dataset) -> str:
    meaning = str(code.get("CodeMeaning", "")).strip()
    value = str(code.get("CodeValue", "") or code.get("LongCodeValue", "") or code.get("URNCodeValue", ""))
    scheme = str(code.get("CodingSchemeDesignator", ""))
    return f"{meaning} ({scheme} {value})".strip() if meaning else f"{scheme} {value}".strip()


def _references(item: Dataset) -> list[ImageReference]:
    refs = []
    for ref in item.get("ReferencedSOPSequence", []):
        frames = ref.get("ReferencedFrameNumber")
        if frames is None:
            frame_list: tuple[int, ...] = ()
        elif isinstance(frames, (list, tuple)) or hasattr(frames, "__iter__") and not isinstance(frames, str):
            frame_list = tuple(int(f) for f in frames)
        else:
            frame_list = (int(frames),)
        refs.append(
            ImageReference(
                str(ref.get("ReferencedSOPClassUID", "")),
                str(ref.get("ReferencedSOPInstanceUID", "")),
                frame_list,
            )
        )
    return refs


def _value(item: Dataset, value_type: str) -> str:
    if value_type == "TEXT":
        return str(item.get("TextValue", ""))
    if value_type == "CODE":
        seq = item.get("ConceptCodeSequence")
        return _code_text(seq[0]) if seq else ""
    if value_type == "NUM":
        seq = item.get("MeasuredValueSequence")
        if not seq:
            qualifier = item.get("NumericValueQualifierCodeSequence")
            return f"(no value: {_code_text(qualifier[0])})" if qualifier else "(no value)"
        measured = seq[0]
        units = measured.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
        unit = "" if unit in ("1", "{ratio}") else unit
        return f"{measured.get('NumericValue', '')} {unit}".strip()
    if value_type == "DATETIME":
        return str(item.get("DateTime", ""))
    if value_type == "DATE":
        return str(item.get("Date", ""))
    if value_type == "TIME":
        return str(item.get("Time", ""))
    if value_type == "PNAME":
        return str(item.get("PersonName", ""))
    if value_type == "UIDREF":
        return str(item.get("UID", ""))
    if value_type in ("SCOORD", "SCOORD3D"):
        kind = str(item.get("GraphicType", ""))
        data = item.get("GraphicData", [])
        return f"{kind} {len(data) // (3 if value_type == 'SCOORD3D' else 2)} point(s)"
    return ""


def _node(item: Dataset, depth: int) -> SrNode:
    value_type = str(item.get("ValueType", "")).upper()
    node = SrNode(
        value_type=value_type,
        relationship=str(item.get("RelationshipType", "")),
        concept=_meaning(item, "ConceptNameCodeSequence"),
    )
    try:
        node.value = _value(item, value_type)
        node.references = _references(item)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        node.value = f"(unreadable {value_type or 'item'}: {type(exc).__name__})"
    if depth < 64:  # a loop of nested items must not exhaust the stack
        node.children = [_node(child, depth + 1) for child in item.get("ContentSequence", [])]
    return node


def read_sr(ds: Dataset) -> SrDocument:
    """The document's title, completion/verification flags and content tree."""
    root = _node(ds, 0)
    root.relationship = ""
    return SrDocument(
        title=root.concept or str(ds.get("SeriesDescription", "")) or "Structured report",
        completion=str(ds.get("CompletionFlag", "")),
        verification=str(ds.get("VerificationFlag", "")),
        root=root,
    )
