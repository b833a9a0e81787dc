"""Import dropped/chosen files, folders and zip archives into the archive (background task body).

Walks the paths and stores each file through :meth:`Archive.store_file` (which validates it and
writes atomically). Files that are not valid DICOM are counted and named in the summary, never
silently dropped.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.tasks import Cancelled
from dicom_net.archive import Archive, InvalidDataset

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # file names (no patient data) with reasons
    study_uids: set[str] = field(default_factory=set)

    def describe(self) -> str:
        text = f"Imported {self.stored} images into {len(self.study_uids)} studies"
        if self.duplicates:
            text += f", {self.duplicates} already present"
        if self.rejected:
            text += f", {len(self.rejected)} files refused (first: {self.rejected[0]})"
        return text


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            yield p


def import_into_archive(archive: Archive, paths: Sequence[Path], *,
                        progress: Callable[[int, int, str], None] | None = None,
                        cancel: threading.Event | None = None) -> ImportSummary:
    """Store every DICOM file under ``paths`` (zip archives are unpacked to a temp dir first)."""
    summary = ImportSummary()
    with tempfile.TemporaryDirectory(prefix="hulu-import-") as tmp:
        files: list[Path] = []
        for n, f in enumerate(_files([Path(p) for p in paths])):
            if f.suffix.lower() == ".zip" and zipfile.is_zipfile(f):
                target = Path(tmp) / f"zip{n}"
                with zipfile.ZipFile(f) as zf:
                    for member in zf.infolist():
                        if member.is_dir() or ".." in Path(member.filename).parts:
                            continue
                        zf.extract(member, target)
                files.extend(sorted(q for q in target.rglob("*") if q.is_file()))
            else:
                files.append(f)
        total = len(files)
        for i, f in enumerate(files, 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            try:
                outcome = archive.store_file(f, source="import")
            except InvalidDataset as exc:
                summary.rejected.append(f"{f.name}: {exc}")
            else:
                summary.study_uids.add(outcome.study_uid)
                if outcome.status == "duplicate":
                    summary.duplicates += 1
                else:
                    summary.stored += 1
            if progress:
                progress(i, total, f"{i}/{total} files")
    log.info("import: %d stored, %d duplicates, %d refused, %d studies", summary.stored, summary.duplicates,
             len(summary.rejected), len(summary.study_uids))
    return summary
