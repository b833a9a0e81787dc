"""Key Object Selection documents: which images someone marked, and why (the document title)."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset

from viewer.object_kinds import object_kind
from viewer.objects.sr import ImageReference, read_sr


@dataclass(frozen=True)
class KeySelection:
    title: str  # e.g. "Of Interest", "For Teaching", "Rejected for Quality Reasons"
    description: str  # the optional free-text Key Object Description
    references: tuple[ImageReference, ...]  # in the document's order

    @property
    def sop_instance_uids(self) -> frozenset[str]:
        return frozenset(ref.sop_instance_uid for ref in self.references)


def read_key_selection(ds: Dataset) -> KeySelection:
    """The selection's title, description and referenced instances."""
    if object_kind(str(ds.get("SOPClassUID", ""))) != "kos":
        raise ValueError("not a Key Object Selection document")
    document = read_sr(ds)
    description = next(
        (node.value for _, node in document.root.walk() if node.value_type == "TEXT" and node.value), ""
    )
    seen: dict[str, ImageReference] = {}
    for ref in document.references():
        seen.setdefault(ref.sop_instance_uid, ref)
    return KeySelection(document.title, description, tuple(seen.values()))
