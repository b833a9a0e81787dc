"""Import dropped/chosen files, folders and zip archives (the body of a background task).

The work is ``dicom_net.importer.import_paths``; this adapter fits it to the task signature
(``progress(done, total, text)``) and words its report for the status bar. Refused files are
counted and the first reason shown, never silently dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from dicom_net.archive import Archive
from dicom_net.importer import ImportReport, import_paths


def describe_import(report: ImportReport) -> str:
    text = f"Imported {report.stored} images into {len(report.study_uids)} studies"
    if report.duplicates:
        text += f", {report.duplicates} already present"
    if report.failed:
        text += f", {len(report.failed)} files refused (first: {report.failed[0][1]})"
    if report.cancelled:
        text += " (cancelled)"
    if report.storage_full:
        text += " - STOPPED: archive disk full"
    return text


def import_into_archive(
    archive: Archive,
    paths: Sequence[Path],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> ImportReport:
    """Store every DICOM object under ``paths`` into ``archive``."""

    def report_progress(done: int, total: int) -> None:
        if progress:
            progress(done, total, f"{done}/{total} files")

    return import_paths(archive, [Path(p) for p in paths], progress=report_progress, cancel=cancel)
