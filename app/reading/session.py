"""One open study in plain Python: its series, the layout, what each viewport shows, loaded volumes.

The reading model: layout, viewports (:class:`app.reading.viewports.ViewportModel`: series, kind
of view and the view states), the active viewport, the maximised one. The reading widget
observes it (``listeners`` get "layout", "slots", "priors", "active", "maximised") and sends it
intents; tests drive it directly. Volumes are loaded with ``viewer.loader.load_series`` (in a
background task by the GUI) and cached per series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from app.reading.layouts import (
    Hanging,
    Layout,
    SeriesInfo,
    ViewKind,
    default_hanging,
    link_groups,
    relayout,
    view_kind_for,
)
from app.reading.priors import find_priors
from app.reading.viewports import MPR_PLANES, ViewportModel
from app.services.task_types import Cancelled
from dicom_net.archive import Archive
from dicom_net.archive_index import SeriesRecord, StudyRecord
from viewer.loader import SliceEvent, load_series
from viewer.series import SkippedFile
from viewer.view_state import ViewState
from viewer.volume import Volume


def _frame_of_reference(path: Path) -> str:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"])
    except Exception:  # noqa: BLE001 - unreadable header: no linking for this series
        return ""
    return str(ds.get("FrameOfReferenceUID", ""))


@dataclass(frozen=True)
class Slot:
    series_uid: str | None
    kind: ViewKind


class ReadingSession:
    """Layout + per-viewport series of one study; ``on_change`` callbacks fire after each change."""

    def __init__(self, archive: Archive, study_uid: str, preferred_layouts: dict[str, Layout] | None = None):
        """``preferred_layouts``: the layout last chosen per modality (updated by
        :meth:`set_layout`; the window keeps it between studies and runs)."""
        self.archive = archive
        self.study_uid = study_uid
        self.study = archive.study(study_uid)
        if self.study is None:
            raise KeyError(f"study {study_uid} is not in the archive")
        self.paths: dict[str, list[Path]] = {}
        infos = []
        for s in sorted(archive.series(study_uid), key=lambda r: (r.series_number or 0, r.series_uid)):
            info = self._add_series(s)
            if info is not None:
                infos.append(info)
        self.series = infos
        self.priors: list[StudyRecord] = find_priors(archive, self.study)
        self.prior_series: dict[str, tuple[SeriesInfo, StudyRecord]] = {}  # shown priors' series
        self.volumes: dict[str, Volume] = {}
        self.skipped: dict[str, list[SkippedFile]] = {}  # per series: files the load left out
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str], None]] = []
        self.preferred_layouts = preferred_layouts if preferred_layouts is not None else {}
        hanging: Hanging = default_hanging(infos, self.preferred_layouts)
        self.layout = hanging.layout
        self.slots = [Slot(uid, kind) for uid, kind in hanging.slots]
        self.viewports: list[ViewportModel] = []
        self._links: list[tuple[ViewState, Callable[[str], None]]] = []  # linked scrolling
        self._syncing = False
        self.active = 0
        self.maximised: int | None = None
        self._pad_slots()

    def _add_series(self, record: SeriesRecord) -> SeriesInfo | None:
        instances = self.archive.instances(record.series_uid)
        if not instances:
            return None
        self.paths[record.series_uid] = [Path(i.path) for i in instances]
        return SeriesInfo(
            record.series_uid,
            record.modality,
            len(instances),
            frames=instances[0].frames,
            frame_of_reference=_frame_of_reference(Path(instances[0].path)),
            description=record.description,
        )

    def info(self, series_uid: str | None) -> SeriesInfo | None:
        found = next((s for s in self.series if s.series_uid == series_uid), None)
        if found is None and series_uid in self.prior_series:
            found = self.prior_series[series_uid][0]
        return found

    def prior_of(self, series_uid: str | None) -> StudyRecord | None:
        """The prior study a shown series belongs to (None: a series of the open study)."""
        entry = self.prior_series.get(series_uid) if series_uid else None
        return entry[1] if entry else None

    def forget_prior(self, study_uid: str) -> bool:
        """Drop a prior (it is being deleted): off the list, its series out of the viewports."""
        if all(p.study_uid != study_uid for p in self.priors):
            return False
        self.priors = [p for p in self.priors if p.study_uid != study_uid]
        gone = {uid for uid, (_, prior) in self.prior_series.items() if prior.study_uid == study_uid}
        for uid in gone:
            del self.prior_series[uid]
            self.paths.pop(uid, None)
            self.volumes.pop(uid, None)
            self.skipped.pop(uid, None)
        self.slots = [Slot(None, ViewKind.STACK) if s.series_uid in gone else s for s in self.slots]
        self._pad_slots()
        self._changed("priors")
        return True

    def _adopt_prior_series(self, series_uid: str) -> SeriesInfo | None:
        """Make a series of one of the priors showable (side by side comparison)."""
        record = self.archive.find_series(series_uid)
        prior = next((p for p in self.priors if record and p.study_uid == record.study_uid), None)
        if record is None or prior is None:
            return None
        info = self._add_series(record)
        if info is not None:
            self.prior_series[series_uid] = (info, prior)
        return info

    def _pad_slots(self) -> None:
        """Fill the grid with empty slots and keep one viewport model per slot: a viewport that
        keeps its series and kind keeps its state (slice, window, measurements)."""
        self.slots = (self.slots + [Slot(None, ViewKind.STACK)] * self.layout.viewport_count)[
            : self.layout.viewport_count
        ]
        kept = {(m.series_uid, m.kind): m for m in self.viewports}
        self.viewports = [
            kept.pop((s.series_uid, s.kind), None) or ViewportModel(s.series_uid, s.kind) for s in self.slots
        ]
        self.active = min(self.active, len(self.viewports) - 1)
        self.maximised = None
        self._link_stacks()

    # -- synchronised scrolling ----------------------------------------------------------------
    def _link_stacks(self) -> None:
        """Stacks on one Frame of Reference scroll together (``linked_viewports``)."""
        for state, callback in self._links:
            if callback in state.changed:
                state.changed.disconnect(callback)
        self._links = []
        for index, model in enumerate(self.viewports):
            if model.kind is ViewKind.STACK:
                callback = self._follower(index)
                model.stack.changed.connect(callback)
                self._links.append((model.stack, callback))

    def _follower(self, index: int) -> Callable[[str], None]:
        return lambda what: self._sync_linked(index) if what == "slice" else None

    def _sync_linked(self, index: int) -> None:
        """Viewport ``index`` scrolled: the other stacks of its group show the nearest slice."""
        source = self.volumes.get(self.viewports[index].series_uid or "")
        if self._syncing or source is None:
            return
        k = self.viewports[index].stack.slice_index
        self._syncing = True
        try:
            for group in self.linked_viewports().values():
                for other in group if index in group else ():
                    target = self.volumes.get(self.viewports[other].series_uid or "")
                    state = self.viewports[other].stack
                    if other != index and target is not None and state.source is target:
                        state.set_slice(linked_slice_index(source, k, target))
        finally:
            self._syncing = False

    # -- active and maximised viewport ---------------------------------------------------------
    def active_viewport(self) -> ViewportModel | None:
        return self.viewports[self.active] if self.viewports else None

    def activate(self, index: int, focus: str = "") -> None:
        """Make viewport ``index`` active (a click in it); ``focus``: the MPR plane clicked."""
        if not 0 <= index < len(self.viewports):
            return
        model = self.viewports[index]
        changed = index != self.active or (focus in MPR_PLANES and focus != model.focus)
        self.active = index
        if focus in MPR_PLANES:
            model.focus = focus
        if changed:
            self._changed("active")

    def toggle_maximised(self, index: int) -> None:
        """Double-click: show viewport ``index`` alone, or the whole grid again."""
        if 0 <= index < len(self.viewports):
            self.maximised = None if self.maximised == index else index
            self.activate(index)
            self._changed("maximised")

    def _changed(self, what: str) -> None:
        for callback in list(self.listeners):
            callback(what)

    def set_layout(self, layout: Layout) -> None:
        """Change the grid; shown series stay, empty viewports get the next unshown series."""
        uids = relayout([s.series_uid for s in self.slots], layout, self.series)
        first = self.info(next((uid for uid in uids if uid), None))
        if first is not None:
            self.preferred_layouts[first.modality] = layout
        self.layout = layout
        self.slots = [
            Slot(uid, view_kind_for(self.info(uid), layout, i) if uid else ViewKind.STACK)
            for i, uid in enumerate(uids)
        ]
        self._pad_slots()
        self._changed("layout")

    def assign(self, index: int, series_uid: str) -> None:
        """Put a series into viewport ``index`` (drag and drop): one of this study's or a prior's."""
        info = self.info(series_uid) or self._adopt_prior_series(series_uid)
        if info is None:
            raise KeyError(f"series {series_uid} is not part of this study or of its priors")
        if not 0 <= index < len(self.slots):
            raise IndexError(f"viewport {index} does not exist in layout {self.layout.value}")
        self.slots[index] = Slot(series_uid, view_kind_for(info, self.layout, index))
        self._pad_slots()
        self._changed("slots")

    def linked_viewports(self) -> dict[str, list[int]]:
        return link_groups(
            [self.info(s.series_uid) if s.kind is ViewKind.STACK else None for s in self.slots]
        )

    def load(
        self,
        series_uid: str,
        progress: Callable[[int, int, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Volume:
        """The series' main volume, loaded once (thread-safe; cancellable between slices)."""
        with self._lock:
            if series_uid in self.volumes:
                return self.volumes[series_uid]

        def on_slice(event: SliceEvent) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if progress and not event.preview:
                progress(event.loaded, event.total, f"{event.loaded}/{event.total} slices")

        result = load_series(self.paths[series_uid], on_slice=on_slice)
        volume = max(result.volumes, key=lambda v: v.voxels.shape[0])
        with self._lock:  # a second load of the same series (a rebuilt grid) keeps the first volume
            self.skipped.setdefault(series_uid, list(result.skipped))
            return self.volumes.setdefault(series_uid, volume)


def linked_slice_index(source: Volume, k: int, target: Volume) -> int:
    """The target slice nearest to the centre of ``source`` slice ``k`` (same Frame of Reference)."""
    i, j, _ = source.shape_ijk
    centre = source.index_to_lps(np.array([(i - 1) / 2.0, (j - 1) / 2.0, float(k)]))
    kt = float(target.lps_to_index(centre)[2])
    return int(min(max(round(kt), 0), target.voxels.shape[0] - 1))
