"""Viewport layouts and default hanging per modality (plain Python, no Qt).

A layout is a grid of viewports; each viewport shows one series in one kind of view
(``stack`` 2D slices, ``mpr`` three orthogonal planes, ``volume`` 3D rendering, ``cine`` for
multi-frame playback). The hanging protocol picks the first layout for a study: 1x1 with the
first series as a stack (CT/MR: the axial acquisition; MPR + 3D is one key away), a cine for
US/XA/ES, unless the reader last chose another layout for that modality (``preferred``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Layout(enum.Enum):
    ONE = "1x1"
    ONE_BY_TWO = "1x2"
    TWO_BY_TWO = "2x2"
    MPR_3D = "MPR + 3D"

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the viewport grid."""
        # MPR + 3D: the three planes side by side on top, the 3D rendering below
        return {"1x1": (1, 1), "1x2": (1, 2), "2x2": (2, 2), "MPR + 3D": (2, 1)}[self.value]

    @property
    def viewport_count(self) -> int:
        r, c = self.grid
        return r * c


class ViewKind(enum.Enum):
    STACK = "stack"
    MPR = "mpr"
    VOLUME = "volume"
    CINE = "cine"


VOLUME_MODALITIES = {"CT", "MR", "PT", "NM"}
PROJECTION_MODALITIES = {"CR", "DX", "MG", "RF", "IO", "PX", "OT"}
CINE_MODALITIES = {"US", "XA", "ES", "IVUS"}


@dataclass(frozen=True)
class SeriesInfo:
    """What hanging needs to know about a series."""

    series_uid: str
    modality: str
    instance_count: int
    frames: int = 1  # frames of the first instance (multi-frame objects)
    frame_of_reference: str = ""
    description: str = ""

    @property
    def is_volume(self) -> bool:
        return self.modality in VOLUME_MODALITIES and self.instance_count >= 3

    @property
    def is_cine(self) -> bool:
        return self.frames > 1 and (self.modality in CINE_MODALITIES or self.instance_count == 1)


def view_kind_for(series: SeriesInfo, layout: Layout | None = None, slot: int = 0) -> ViewKind:
    """The view a series gets by default in a viewport of ``layout``."""
    if series.is_cine:
        return ViewKind.CINE
    if layout is Layout.MPR_3D and series.is_volume:
        return ViewKind.MPR if slot == 0 else ViewKind.VOLUME
    return ViewKind.STACK


@dataclass(frozen=True)
class Hanging:
    layout: Layout
    slots: tuple[tuple[str, ViewKind], ...]  # (series uid, view kind) per viewport, in grid order


def _priority(s: SeriesInfo) -> tuple[int, int]:
    return (
        0 if s.is_volume else 1 if s.modality in PROJECTION_MODALITIES else 2 if s.is_cine else 3,
        -s.instance_count,
    )


def default_hanging(series: Sequence[SeriesInfo], preferred: Mapping[str, Layout] | None = None) -> Hanging:
    """The first layout and series placement when a study opens: the layout last chosen for the
    first series' modality (``preferred``), else 1x1."""
    if not series:
        return Hanging(Layout.ONE, ())
    first = min(series, key=_priority)
    layout = (preferred or {}).get(first.modality, Layout.ONE)
    uids = relayout([first.series_uid], layout, series)
    by_uid = {s.series_uid: s for s in series}
    return Hanging(
        layout,
        tuple((uid, view_kind_for(by_uid[uid], layout, i)) for i, uid in enumerate(uids) if uid is not None),
    )


def relayout(current: Sequence[str | None], layout: Layout, series: Sequence[SeriesInfo]) -> list[str | None]:
    """Series for each viewport of a new layout: keep what is shown, fill the rest in order."""
    wanted = layout.viewport_count
    if layout is Layout.MPR_3D:
        first = next((uid for uid in current if uid), None) or (series[0].series_uid if series else None)
        return [first, first]
    unique = list(dict.fromkeys(uid for uid in current if uid))  # leaving MPR + 3D: one slot per series
    slots = (unique + [None] * wanted)[:wanted]
    unused = [s.series_uid for s in sorted(series, key=_priority) if s.series_uid not in slots]
    for i, uid in enumerate(slots):
        if uid is None and unused:
            slots[i] = unused.pop(0)
    return slots


def link_groups(shown: Sequence[SeriesInfo | None]) -> dict[str, list[int]]:
    """Viewport indices grouped by shared Frame of Reference (2+ viewports): scroll them together."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(shown):
        if s is not None and s.frame_of_reference:
            groups.setdefault(s.frame_of_reference, []).append(i)
    return {k: v for k, v in groups.items() if len(v) > 1}
