"""The study browser's model in plain Python: filtered study rows, live changes, incoming counts.

The listener is another process, so new studies are found by polling the archive's change cursor
(:meth:`StudyBrowserLogic.poll`, driven by a QTimer in the widget). A study that changed within
the last few seconds is shown as "receiving" with the count of images received so far.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dicom_net.archive import Archive
from dicom_net.archive_index import StudyRecord

RECEIVING_WINDOW_S = 5.0


def study_files(archive: Archive, study_uid: str) -> list[Path]:
    """Every archived file of a study, series by series (export, SR evidence)."""
    return [Path(i.path) for s in archive.series(study_uid) for i in archive.instances(s.series_uid)]


@dataclass(frozen=True)
class StudyFilter:
    """What the filter bar asks for; empty fields do not filter."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    modality: str = ""
    date_from: str = ""  # YYYYMMDD or YYYY-MM-DD
    date_to: str = ""

    def archive_filters(self) -> dict[str, str]:
        """Keyword filters for :meth:`Archive.studies`; raises ValueError on a malformed date."""
        out = {k: v.strip() for k, v in asdict(self).items() if v and v.strip()}
        for key in ("date_from", "date_to"):
            if key in out:
                out[key] = _normalise_date(out[key])
        if "modality" in out:
            out["modality"] = out["modality"].upper()
        return out


def _normalise_date(text: str) -> str:
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise ValueError(f"date {text!r} must be YYYY-MM-DD or YYYYMMDD")


def format_date(dicom_date: str) -> str:
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:8]}" if len(dicom_date) == 8 else dicom_date


def patient_banner(record: StudyRecord) -> str:
    """One line naming the patient and the study (shown above the images while reading)."""
    name = ", ".join(p for p in record.patient_name.split("^")[:2] if p) or "(no name)"
    born = f"born {format_date(record.birth_date)}" if record.birth_date else ""
    parts = [
        name,
        f"ID {record.patient_id or '(none)'}",
        " ".join(p for p in (born, record.sex) if p),
        " ".join(p for p in ("/".join(record.modalities), record.description) if p),
        format_date(record.study_date),
        f"Acc {record.accession}" if record.accession else "",
    ]
    return "  |  ".join(p for p in parts if p)


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[StudyRecord], object]


COLUMNS: tuple[Column, ...] = (
    Column("Patient name", lambda s: s.patient_name.replace("^", " ").strip()),
    Column("Patient ID", lambda s: s.patient_id),
    Column("Date", lambda s: format_date(s.study_date)),
    Column("Modality", lambda s: "/".join(s.modalities)),
    Column("Description", lambda s: s.description),
    Column("Accession", lambda s: s.accession),
    Column("Series", lambda s: s.series_count),
    Column("Images", lambda s: s.instance_count),
)


class StudyBrowserLogic:
    """Rows of the study list for the current filter, kept up to date by :meth:`poll`."""

    def __init__(self, archive: Archive, clock: Callable[[], float] = time.monotonic):
        self.archive = archive
        self.clock = clock
        self.filter = StudyFilter()
        self.rows: list[StudyRecord] = []
        self.cursor = archive.change_cursor()
        self._last_change: dict[str, float] = {}
        self.last_received: StudyRecord | None = None
        self.busy: dict[str, str] = {}  # study UID -> what a background task is doing to it
        self.refresh()

    def set_filter(self, study_filter: StudyFilter) -> None:
        study_filter.archive_filters()  # refuse a bad date before changing anything
        self.filter = study_filter
        self.refresh()

    def refresh(self) -> None:
        self.rows = self.archive.studies(**self.filter.archive_filters())

    def poll(self) -> list[str]:
        """Pick up studies stored or deleted since the last poll; returns their UIDs."""
        cursor, changed = self.archive.changes_since(self.cursor)
        if cursor == self.cursor:
            return []
        self.cursor = cursor
        now = self.clock()
        for uid in changed:
            self._last_change[uid] = now
            record = self.archive.study(uid)
            if record is not None:
                self.last_received = record
        self.refresh()
        return changed

    def receiving(self, study_uid: str) -> bool:
        """Whether images of this study arrived within the last few seconds."""
        t = self._last_change.get(study_uid)
        return t is not None and self.clock() - t < RECEIVING_WINDOW_S

    def mark_busy(self, study_uid: str, what: str) -> bool:
        """Mark a study as being changed by a task (e.g. "deleting"); False if it already is."""
        if study_uid in self.busy:
            return False
        self.busy[study_uid] = what
        return True

    def clear_busy(self, study_uid: str) -> None:
        self.busy.pop(study_uid, None)

    def status_text(self, record: StudyRecord) -> str:
        if record.study_uid in self.busy:
            return f"{self.busy[record.study_uid]}..."
        return f"receiving... {record.instance_count} images" if self.receiving(record.study_uid) else ""

    def is_empty(self) -> bool:
        return not self.archive.studies()
