"""Import DICOM files, folders, DICOMDIRs and zip files into the archive.

:func:`import_paths` is what the command line and the GUI's drag-and-drop call: it reports
progress through a callback and stops between files when the cancel flag is set. Every object
goes through :meth:`Archive.store_bytes`, so the same validation and atomic writes apply as for
received objects; files that are not DICOM are skipped, broken DICOM files are reported.

Part-10 files are stored with their bytes unchanged. The one exception: a raw dataset without
preamble or File Meta group, in implicit VR little endian (as some old exports write), is
accepted when it parses and carries SOP Class and Instance UIDs; it is stored as a Part-10
file made of a File Meta header we add followed by its dataset bytes unchanged, and logged
with its SOP Instance UID.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ImplicitVRLittleEndian

from dicom_net.archive import Archive, StorageFull
from dicom_net.header_scan import MalformedDataset, read_meta
from dicom_net.part10 import file_meta_header
from dicom_net.validation import InvalidDataset, is_valid_uid

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
ProgressCallback = Callable[[int, int], None]
CancelFlag = threading.Event | Callable[[], bool]


@dataclass
class ImportReport:
    """What an import did. ``failed`` holds (source, reason) for DICOM files that were refused."""

    stored: int = 0
    raw_datasets: int = 0  # of the stored: raw datasets given a File Meta header (module docstring)
    duplicates: int = 0
    versions: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    study_uids: set[str] = field(default_factory=set)
    cancelled: bool = False
    storage_full: bool = False

    @property
    def total_done(self) -> int:
        return self.stored + self.duplicates + self.versions + self.skipped + len(self.failed)


@dataclass(frozen=True)
class _Source:
    """One candidate object: a label for reports and a way to read its bytes."""

    label: str
    read: Callable[[], bytes]


def _is_cancelled(cancel: CancelFlag | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def _dicomdir_files(path: Path) -> list[Path]:
    """Files referenced by a DICOMDIR (paths relative to the DICOMDIR's folder)."""
    ds = dcmread(path, stop_before_pixels=True)
    files = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            files.append(path.parent.joinpath(*parts))
    return files


def _zip_sources(path: Path) -> Iterator[_Source]:
    with zipfile.ZipFile(path) as zf:
        names = [info.filename for info in zf.infolist() if not info.is_dir()]
    for name in names:

        def read(name: str = name) -> bytes:
            with zipfile.ZipFile(path) as zf:
                return zf.read(name)

        yield _Source(f"{path.name}:{name}", read)


def collect_sources(paths: list[Path]) -> list[_Source]:
    """Expand files, folders (recursively), DICOMDIRs and zip files into single objects."""
    sources: list[_Source] = []
    seen: set[Path] = set()

    def add_file(p: Path) -> None:
        p = p.absolute()
        if p in seen:
            return
        seen.add(p)
        if zipfile.is_zipfile(p):
            sources.extend(_zip_sources(p))
        else:
            sources.append(_Source(str(p), p.read_bytes))

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for folder, _dirs, names in os.walk(path):
                for name in sorted(names):
                    add_file(Path(folder) / name)
        elif path.name.upper() == "DICOMDIR":
            for ref in _dicomdir_files(path):
                add_file(ref)
        elif path.is_file():
            add_file(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sources


def _media_class(data: bytes) -> str:
    """The Media Storage SOP Class UID from the file meta (cheap: meta group only)."""
    meta, _ = read_meta(data)
    return meta.get(0x0002, b"").decode("ascii", "replace").rstrip("\0 ")


def import_paths(
    archive: Archive,
    paths: list[Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    source: str = "import",
) -> ImportReport:
    """Import everything under ``paths``; ``progress(done, total)`` after each object.

    Stops between objects when ``cancel`` is set (objects already stored stay stored) and when
    the disk is full.
    """
    report = ImportReport()
    sources = collect_sources([Path(p) for p in paths])
    total = len(sources)
    if progress:
        progress(0, total)
    for done, src in enumerate(sources, start=1):
        if _is_cancelled(cancel):
            report.cancelled = True
            break
        _import_one(archive, src, report, source)
        if progress:
            progress(done, total)
        if report.storage_full:
            break
    log.info(
        "import: %d stored, %d duplicates, %d versions, %d skipped, %d failed%s",
        report.stored,
        report.duplicates,
        report.versions,
        report.skipped,
        len(report.failed),
        " (cancelled)" if report.cancelled else "",
    )
    return report


def _import_one(archive: Archive, src: _Source, report: ImportReport, source: str) -> None:
    try:
        data = src.read()
    except OSError as exc:
        report.failed.append((src.label, f"unreadable: {exc.strerror or exc}"))
        return
    raw_uid = None
    if len(data) < 132 or data[128:132] != b"DICM":
        wrapped = raw_dataset_as_part10(data)
        if wrapped is None:
            report.skipped += 1  # not DICOM (readme, thumbnails) or a dataset we cannot identify
            return
        raw_uid, data = wrapped
    try:
        if _media_class(data) == MEDIA_STORAGE_DIRECTORY:
            report.skipped += 1  # a DICOMDIR: its referenced files are imported instead
            return
    except MalformedDataset:  # broken meta: the full validation below reports it
        pass
    try:
        outcome = archive.store_bytes(data, source=source)
    except InvalidDataset as exc:
        report.failed.append((src.label, str(exc)))
        return
    except StorageFull as exc:
        report.failed.append((src.label, str(exc)))
        report.storage_full = True
        return
    report.study_uids.add(outcome.study_uid)
    if raw_uid is not None and outcome.status != "duplicate":
        report.raw_datasets += 1
        log.warning(
            "import: SOP instance %s had no Part-10 header; stored with a File Meta header added", raw_uid
        )
    if outcome.status == "stored":
        report.stored += 1
    elif outcome.status == "duplicate":
        report.duplicates += 1
    else:
        report.versions += 1


def _looks_like_implicit_little_endian(data: bytes) -> bool:
    """The first element is a group-0008 tag in implicit VR little endian (no VR, 4-byte length)."""
    if len(data) < 8:
        return False
    group, _element, length = struct.unpack_from("<HHI", data)
    explicit_vr = data[4:6].isalpha() and data[4:6].isupper()
    return group == 0x0008 and not explicit_vr and length <= len(data) - 8


def raw_dataset_as_part10(data: bytes) -> tuple[str, bytes] | None:
    """(SOP Instance UID, Part-10 bytes) for a raw implicit-VR little-endian dataset, else None.

    The dataset bytes are kept; only the preamble, 'DICM' and a File Meta group are put before
    them. Returns None for anything that does not parse as such a dataset with both SOP UIDs.
    """
    if not _looks_like_implicit_little_endian(data):
        return None
    try:
        ds = dcmread(
            io.BytesIO(data),
            force=True,
            stop_before_pixels=True,
            specific_tags=[(0x0008, 0x0016), (0x0008, 0x0018)],
        )
        implicit, little = ds.original_encoding
        sop_class, sop_instance = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    except Exception:  # noqa: BLE001 - arbitrary bytes make pydicom raise many kinds: not a dataset
        return None
    if not (implicit and little) or not all(is_valid_uid(u) for u in (sop_class, sop_instance)):
        return None
    return sop_instance, file_meta_header(sop_class, sop_instance, str(ImplicitVRLittleEndian)) + data
