"""The local archive: DICOM files exactly as received plus an SQLite index (WAL).

Layout under the archive root::

    index.sqlite                     the index (patients, studies, series, instances, changes)
    studies/<study>/<series>/<sop>.dcm            first version of each SOP instance
    studies/<study>/<series>/<sop>~<sha256:16>.dcm  a later object with the same UID but another
                                     dataset (hash of transfer syntax and dataset; our File Meta,
                                     e.g. the sender's AE title, does not make a new version)
    tmp/<pid>-<random>.part          files being written (removed on failure, swept when stale)
    spare/<pid>-<random>.spare       empty files created ahead by a helper thread, then written as
                                     temp files (creating a file can wait ~0.5 ms on the journal)
    .last-scan                       when the last scan for unindexed files started (epoch seconds)
    trash/                           studies being deleted
    quarantine/                      files reindex found invalid or filed under a second study

A series belongs to one study: an object whose Series Instance UID the archive already files
under another Study Instance UID is refused (:class:`SeriesInOtherStudy`).

Crash safety: a file gets its final name only by ``link(2)`` of a complete, fsynced temp file,
and its index row is committed only after that, so the index never points at a missing or
partial file. Killing a writer can at worst leave a complete file without a row, which
:meth:`Archive.adopt_unindexed` (run when the listener starts) or :meth:`Archive.reindex` picks
up. ``link`` fails when the name exists, which makes concurrent writers in several processes safe
without a lock around the slow part. A shared ``flock`` on
``.layout.lock`` keeps :meth:`Archive.delete_study` from moving a study away between a writer's
link and its index commit.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dicom_net import archive_index as idx
from dicom_net.archive_index import InstanceRecord, SeriesInOtherStudy, SeriesRecord, StudyRecord
from dicom_net.atomic import write_bytes_atomic
from dicom_net.header_scan import MalformedDataset, read_meta
from dicom_net.validation import ArchiveError, HeaderInfo, InvalidDataset, inspect_part10

__all__ = [
    "Archive",
    "ArchiveError",
    "InstanceRecord",
    "InvalidDataset",
    "SeriesInOtherStudy",
    "SeriesRecord",
    "StorageFull",
    "StoreOutcome",
    "StudyRecord",
]

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite"
SCAN_MARK_NAME = ".last-scan"
_MTIME_SLACK_S = 2.0  # directory mtimes use a coarse clock: rescan folders touched shortly before a scan
DEFAULT_MIN_FREE_BYTES = 16 * 1024 * 1024
_SAFE_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_BATCH_ROWS = 64  # deferred index rows: commit when this many wait ...
_BATCH_DELAY_S = 0.05  # ... or after this long
_RETRY_DELAY_S = 1.0  # a full disk: keep the rows and try again
_FLUSH_WAIT_S = 10.0  # queries wait at most this long for rows that cannot be committed (full disk)
_SPARE_FILES = 4  # empty temp files kept ready for the listener's next writes


class StorageFull(ArchiveError):
    """No room for the object (disk or quota full): C-STORE status 0xA700, out of resources."""

    status = 0xA700


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one stored object: 'stored', 'duplicate' (same bytes) or 'version'."""

    status: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    path: Path


@dataclass(frozen=True)
class _PendingRow:
    """An index row for a file already in its final place, waiting for the next batch commit."""

    info: HeaderInfo
    path: Path
    size: int
    primary: bool
    source: str
    received_at: float
    needs_fsync: bool = False


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_name(uid: str) -> str:
    """A file name for a UID: the UID itself when harmless, else a stable hash of it."""
    return uid if _SAFE_NAME.match(uid) else "x" + hashlib.sha256(uid.encode()).hexdigest()[:40]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Object:
    """What makes two received files the same object: transfer syntax and dataset bytes.

    The File Meta group is ours (Source AE Title, implementation), not part of the object, so
    the same object sent by two AEs is a duplicate, not a new version.
    """

    syntax: bytes
    dataset: memoryview

    @classmethod
    def of(cls, part10: bytes) -> _Object:
        meta, start = read_meta(part10)
        return cls(meta.get(0x0010, b"").rstrip(b"\0 "), memoryview(part10)[start:])

    def digest(self) -> str:
        return hashlib.sha256(self.syntax + b"\0" + self.dataset).hexdigest()[:16]

    def stored_in(self, path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size < len(self.dataset):
                    return False
                other = _Object.of(f.read())
        except (FileNotFoundError, MalformedDataset):
            return False
        return other.syntax == self.syntax and other.dataset == self.dataset


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


class Archive:
    """Files + SQLite index. Thread-safe within a process; several processes may write at once."""

    def __init__(self, root: Path, *, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
        self.root = Path(root).expanduser().absolute()
        self.studies_dir = self.root / "studies"
        self.tmp_dir = self.root / "tmp"
        self.trash_dir = self.root / "trash"
        self.spare_dir = self.root / "spare"
        self.min_free_bytes = min_free_bytes
        for folder in (self.studies_dir, self.tmp_dir, self.trash_dir, self.spare_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._layout_fd = os.open(self.root / ".layout.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._index_was_corrupt = False
        self._layout_depth = 0
        self._pending: list[_PendingRow] = []
        self._pending_cond = threading.Condition()
        self._in_flight = 0
        self._flush_now = False
        self._closing = False
        self._batcher: threading.Thread | None = None
        self._spares: list[tuple[Path, int]] = []  # (path, open fd) of empty files in spare/
        self._spare_cond = threading.Condition()
        self._spare_maker: threading.Thread | None = None
        self._spares_closed = False
        self._series_lock = threading.Lock()  # taken before, never while holding, ``_lock``
        self._series_studies: dict[str, str] = {}  # series -> study, of this process's stores
        self._db = self._open_index()
        self._sweep_leftovers()
        if self._index_was_corrupt:
            self.reindex()

    # ---------------------------------------------------------------- set-up and tear-down

    def _open_index(self) -> sqlite3.Connection:
        db_path = self.root / INDEX_NAME
        conn: sqlite3.Connection | None = None
        try:
            conn = idx.connect(db_path)
            idx.create_schema(conn)
            return conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, disk full, permissions: not corruption
            aside = db_path.with_name(f"{INDEX_NAME}.corrupt-{int(time.time())}")
            log.error("archive index unreadable (%s); moved aside to %s and rebuilt", exc, aside.name)
            if conn is not None:
                conn.close()
            self._index_was_corrupt = True
            os.replace(db_path, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(db_path) + suffix).unlink(missing_ok=True)
            conn = idx.connect(db_path)
            idx.create_schema(conn)
            return conn

    def _sweep_leftovers(self) -> None:
        """Remove temp files of dead writers and studies left in the trash by an interrupted delete."""
        for part in (*self.tmp_dir.glob("*.part"), *self.spare_dir.glob("*.spare")):
            pid_text = part.name.split("-", 1)[0]
            if not pid_text.isdigit() or not _pid_alive(int(pid_text)):
                part.unlink(missing_ok=True)
        for entry in self.trash_dir.iterdir():
            shutil.rmtree(entry, ignore_errors=True)

    def close(self) -> None:
        """Commit pending index rows, then close the index."""
        with self._pending_cond:
            self._closing = True
            self._pending_cond.notify_all()
        if self._batcher is not None:
            self._batcher.join()
            self._batcher = None
        self._drop_spares()
        with self._lock:
            self._db.close()
            if self._layout_fd >= 0:
                os.close(self._layout_fd)
                self._layout_fd = -1

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- locking helpers

    @contextmanager
    def _layout(self, exclusive: bool) -> Iterator[None]:
        """The inter-process layout lock; re-entrant (callers hold ``self._lock``)."""
        if self._layout_depth == 0:
            fcntl.flock(self._layout_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        self._layout_depth += 1
        try:
            yield
        finally:
            self._layout_depth -= 1
            if self._layout_depth == 0:
                fcntl.flock(self._layout_fd, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---------------------------------------------------------------- storing

    def store_file(self, path: Path, *, source: str = "") -> StoreOutcome:
        """Store a Part-10 file (its bytes unchanged)."""
        return self.store_bytes(Path(path).read_bytes(), source=source)

    def store_bytes(
        self,
        part10: bytes,
        *,
        source: str = "",
        info: HeaderInfo | None = None,
        expected_sop_class: str | None = None,
        expected_sop_instance: str | None = None,
        defer_index: bool = False,
        sync_before_return: bool = True,
    ) -> StoreOutcome:
        """Validate and store a complete Part-10 file's bytes.

        ``info`` skips the parse when the caller already ran :func:`inspect_part10` on these
        bytes. Raises :class:`InvalidDataset` (nothing stored) or :class:`StorageFull`.

        With ``defer_index`` (the listener), the call returns once the file is fsynced and in its
        final place; its directory fsync and index row follow in a batch within ~50 ms (queries
        in this process wait for them). A kill before that leaves a complete file without a row,
        which :meth:`reindex` (run when the listener starts) picks up.

        ``sync_before_return=False`` (only with ``defer_index``) moves the file's fsync into that
        batch too: a killed process still leaves only complete files (the bytes are written
        before the link) and rows are committed only for fsynced files, but a power cut within
        the batch window can lose objects already acknowledged, as with DCMTK's storescp.
        """
        if not sync_before_return and not defer_index:
            raise ValueError("sync_before_return=False needs defer_index=True")
        if info is None:
            info = inspect_part10(
                part10, expected_sop_class=expected_sop_class, expected_sop_instance=expected_sop_instance
            )
        first_of_series = self._claim_series(info)
        try:
            return self._store(part10, info, source, defer_index, sync_before_return)
        except BaseException:
            if first_of_series:
                with self._series_lock:
                    self._series_studies.pop(info.series_uid, None)
            raise

    def _claim_series(self, info: HeaderInfo) -> bool:
        """Refuse an object whose series the archive files under another study.

        Series seen by this process are remembered (their rows may still wait for the batch);
        others are looked up in the index. True when this call is the first to claim the series.
        """
        with self._series_lock:
            remembered = self._series_studies.get(info.series_uid)
            if remembered == info.study_uid:
                return False
            if remembered is not None:
                self.flush()  # our rows of that series are committed: the index decides (deleted since?)
            with self._lock:
                owner = idx.series_study(self._db, info.series_uid)
            if owner is not None and owner != info.study_uid:
                self._series_studies[info.series_uid] = owner
                raise SeriesInOtherStudy(info.series_uid)
            self._series_studies[info.series_uid] = info.study_uid
            return owner is None

    def _store(
        self, part10: bytes, info: HeaderInfo, source: str, defer_index: bool, sync_before_return: bool
    ) -> StoreOutcome:
        obj = _Object.of(part10)
        series_dir = self.studies_dir / _safe_name(info.study_uid) / _safe_name(info.series_uid)
        primary = series_dir / f"{_safe_name(info.sop_instance_uid)}.dcm"
        if obj.stored_in(primary):  # fast path for a re-sent object: no write at all
            row = _PendingRow(info, primary, len(part10), True, source, time.time())
            if defer_index:
                self._queue_row(row)
                return StoreOutcome(
                    "duplicate", info.sop_instance_uid, info.study_uid, info.series_uid, primary
                )
            with self._lock, self._layout(exclusive=False):
                if primary.exists():
                    self._commit_rows([row], sync_dirs=False)
                    return StoreOutcome(
                        "duplicate", info.sop_instance_uid, info.study_uid, info.series_uid, primary
                    )
        tmp = self._write_temp(part10, fsync=sync_before_return, spare=defer_index)
        try:
            with self._lock, self._layout(exclusive=False):
                status, final = self._link_into_place(tmp, series_dir, primary, obj, sync_dir=not defer_index)
                row = _PendingRow(
                    info,
                    final,
                    len(part10),
                    final == primary,
                    source,
                    time.time(),
                    needs_fsync=not sync_before_return and status != "duplicate",
                )
                if defer_index:
                    self._queue_row(row)
                else:
                    try:
                        self._commit_rows([row], sync_dirs=False)
                    except BaseException:
                        if status != "duplicate":
                            final.unlink(missing_ok=True)
                        raise
        except BaseException as exc:
            if _is_disk_full(exc):
                raise StorageFull("archive disk is full") from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        if status == "version":
            log.warning(
                "SOP instance %s received again with different bytes: kept both (%s)",
                info.sop_instance_uid,
                final.name,
            )
        return StoreOutcome(status, info.sop_instance_uid, info.study_uid, info.series_uid, final)

    def _write_temp(self, data: bytes, fsync: bool = True, spare: bool = False) -> Path:
        """Write ``data`` to a temp file (one of the spare files when ``spare``), fsynced if asked."""
        if shutil.disk_usage(self.tmp_dir).free < len(data) + self.min_free_bytes:
            raise StorageFull("archive disk is nearly full")
        taken = self._take_spare() if spare else None
        if taken is not None:
            tmp, fd = taken
        else:
            tmp, fd = self.tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex}.part", -1
        try:
            if fd < 0:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if _is_disk_full(exc):
                raise StorageFull("archive disk is full") from exc
            raise
        return tmp

    # ---------------------------------------------------------------- spare temp files

    def _take_spare(self) -> tuple[Path, int] | None:
        """An empty temp file created ahead (path, open fd), or None when none is ready."""
        with self._spare_cond:
            if self._spare_maker is None and not self._spares_closed:
                self._spare_maker = threading.Thread(
                    target=self._make_spares, name="archive-spares", daemon=True
                )
                self._spare_maker.start()
            taken = self._spares.pop() if self._spares else None
            self._spare_cond.notify_all()
        return taken

    def _make_spares(self) -> None:
        """Keep ``_SPARE_FILES`` empty files ready, so a writer never waits on a file creation."""
        cond = self._spare_cond
        while True:
            with cond:
                cond.wait_for(lambda: len(self._spares) < _SPARE_FILES or self._spares_closed)
                if self._spares_closed:
                    return
            path = self.spare_dir / f"{os.getpid()}-{uuid.uuid4().hex}.spare"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError:  # full disk or folder gone: writers create their own meanwhile
                with cond:
                    cond.wait_for(lambda: self._spares_closed, timeout=_RETRY_DELAY_S)
                continue
            with cond:
                if not self._spares_closed:
                    self._spares.append((path, fd))
                    continue
            os.close(fd)
            path.unlink(missing_ok=True)
            return

    def _drop_spares(self) -> None:
        with self._spare_cond:
            self._spares_closed = True
            self._spare_cond.notify_all()
        if self._spare_maker is not None:
            self._spare_maker.join()
            self._spare_maker = None
        with self._spare_cond:
            spares, self._spares = self._spares, []
        for path, fd in spares:
            os.close(fd)
            path.unlink(missing_ok=True)

    def _link_into_place(
        self, tmp: Path, series_dir: Path, primary: Path, obj: _Object, sync_dir: bool = True
    ) -> tuple[str, Path]:
        """Give the complete temp file its final name without ever replacing another file."""
        series_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, primary)
            if sync_dir:
                _fsync_dir(series_dir)
            return "stored", primary
        except FileExistsError:
            pass
        for kept in (primary, *sorted(series_dir.glob(f"{primary.stem}~*.dcm"))):
            if obj.stored_in(kept):
                return "duplicate", kept
        versioned = primary.with_name(f"{primary.stem}~{obj.digest()}.dcm")
        try:
            os.link(tmp, versioned)
            if sync_dir:
                _fsync_dir(series_dir)
            return "version", versioned
        except FileExistsError:
            if obj.stored_in(versioned):
                return "duplicate", versioned
            raise ArchiveError(f"hash collision for {versioned.name}") from None

    def _commit_rows(self, rows: list[_PendingRow], sync_dirs: bool) -> None:
        """Insert index rows in one transaction (caller holds or takes the locks)."""
        for row in rows:
            if row.needs_fsync:
                try:
                    _fsync_file(row.path)
                except FileNotFoundError:
                    pass  # deleted meanwhile: its row is skipped below
        if sync_dirs:
            for folder in {row.path.parent for row in rows}:
                try:
                    _fsync_dir(folder)
                except FileNotFoundError:
                    pass  # deleted meanwhile: its rows are skipped below
        misfiled: list[Path] = []
        with self._lock, self._layout(exclusive=False), self._transaction() as conn:
            for row in rows:
                if not row.path.exists():
                    continue  # its study was deleted between the link and this commit
                version = (
                    1
                    if row.primary
                    else conn.execute(
                        "SELECT coalesce(max(version), 1) + 1 FROM instances WHERE sop_instance_uid = ?",
                        (row.info.sop_instance_uid,),
                    ).fetchone()[0]
                )
                rel = row.path.relative_to(self.root).as_posix()
                try:
                    idx.insert_instance(conn, row.info, rel, row.size, version, row.source, row.received_at)
                except SeriesInOtherStudy:  # another process filed the series under another study meanwhile
                    misfiled.append(row.path)
        for path in misfiled:
            self._quarantine(path, "its Series Instance UID belongs to another study")

    def _queue_row(self, row: _PendingRow) -> None:
        with self._pending_cond:
            self._pending.append(row)
            if self._batcher is None:
                self._batcher = threading.Thread(target=self._batch_loop, name="archive-index", daemon=True)
                self._batcher.start()
            # Wake the batcher on the first row (it sleeps on an empty queue) and on a full batch.
            if len(self._pending) == 1 or len(self._pending) >= _BATCH_ROWS:
                self._pending_cond.notify_all()

    def _batch_loop(self) -> None:
        cond = self._pending_cond
        while True:
            with cond:
                cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending and self._closing:
                    return
                cond.wait_for(
                    lambda: len(self._pending) >= _BATCH_ROWS or self._flush_now or self._closing,
                    timeout=_BATCH_DELAY_S,
                )
                batch, self._pending = self._pending, []
                self._flush_now = False
                self._in_flight += 1
            retry = False
            try:
                self._commit_rows(batch, sync_dirs=True)
            except Exception as exc:  # the files are safe; only their rows are missing for now
                retry = _is_disk_full(exc) and not self._closing
                log.error(
                    "could not index %d received objects (%s); %s",
                    len(batch),
                    type(exc).__name__,
                    "retrying" if retry else "`archive --reindex` will add them",
                )
            with cond:
                self._in_flight -= 1
                if retry:
                    self._pending[:0] = batch
                    cond.notify_all()
                    cond.wait_for(lambda: self._closing, timeout=_RETRY_DELAY_S)
                cond.notify_all()

    def flush(self) -> bool:
        """Wait until every deferred index row of this process is committed (bounded wait).

        Returns False when rows still wait after that (a full disk: they are retried).
        """
        with self._pending_cond:
            if not self._pending and not self._in_flight:
                return True
            self._flush_now = True
            self._pending_cond.notify_all()
            return self._pending_cond.wait_for(
                lambda: not self._pending and not self._in_flight, timeout=_FLUSH_WAIT_S
            )

    # ---------------------------------------------------------------- queries

    def studies(self, **filters: object) -> list[StudyRecord]:
        """Studies, newest first. Filters: patient_name, patient_id, accession, description
        (case-insensitive substrings), date_from, date_to (inclusive, date or 'YYYYMMDD'), modality."""
        self.flush()
        with self._lock:
            return idx.query_studies(self._db, filters)

    def study(self, study_uid: str) -> StudyRecord | None:
        self.flush()
        with self._lock:
            found = idx.query_studies(self._db, {"study_uid": study_uid})
        return found[0] if found else None

    def series(self, study_uid: str) -> list[SeriesRecord]:
        self.flush()
        with self._lock:
            return idx.query_series(self._db, study_uid=study_uid)

    def find_series(self, series_uid: str) -> SeriesRecord | None:
        self.flush()
        with self._lock:
            found = idx.query_series(self._db, series_uid=series_uid)
        return found[0] if found else None

    def instances(self, series_uid: str, *, all_versions: bool = False) -> list[InstanceRecord]:
        """Instances sorted by instance number, newest version of each SOP instance only."""
        self.flush()
        with self._lock:
            return idx.query_instances(self._db, self.root, series_uid, all_versions)

    def instance_count(self) -> int:
        self.flush()
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM instances").fetchone()[0])

    # ---------------------------------------------------------------- live updates

    def change_cursor(self) -> int:
        self.flush()
        with self._lock:
            return int(self._db.execute("SELECT value FROM counter WHERE name = 'changes'").fetchone()[0])

    def changes_since(self, cursor: int) -> tuple[int, list[str]]:
        """(new cursor, study UIDs stored into or deleted since ``cursor``)."""
        self.flush()
        with self._lock, self._transaction(write=False) as conn:  # one snapshot; never blocks writers
            now = int(conn.execute("SELECT value FROM counter WHERE name = 'changes'").fetchone()[0])
            rows = conn.execute(
                "SELECT study_uid FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq", (cursor, now)
            ).fetchall()
        return now, [r[0] for r in rows]

    # ---------------------------------------------------------------- maintenance

    def delete_study(self, study_uid: str) -> int:
        """Remove a study's index rows, then its files; returns the number of instances removed."""
        study_dir = self.studies_dir / _safe_name(study_uid)
        trash = self.trash_dir / f"{uuid.uuid4().hex}"
        self.flush()
        with self._lock, self._layout(exclusive=True):
            with self._transaction() as conn:
                removed = conn.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,)).rowcount
                conn.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
                conn.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
                idx.prune_empty(conn)
                idx.touch_study(conn, study_uid)
            if study_dir.exists():
                os.rename(study_dir, trash)
        with self._series_lock:
            for series in [k for k, v in self._series_studies.items() if v == study_uid]:
                del self._series_studies[series]
        shutil.rmtree(trash, ignore_errors=True)
        log.info("deleted study %s (%d instances)", study_uid, removed)
        return removed

    def adopt_unindexed(self) -> int:
        """Index files that have no row, reading only series folders changed since the last scan.

        A writer killed between link and index commit leaves a complete file without a row; its
        link changed its folder's mtime, so that folder is newer than the last scan's start and
        is listed here, while untouched folders are not even read. Files of listed folders that
        the index lacks are parsed and added (invalid ones quarantined). Without a usable scan
        mark (first start, mark from the future after a clock change) this is a full
        :meth:`reindex`. Returns the number of files added.
        """
        since = self._last_scan_start()
        if since is None or since > time.time():
            before = self.instance_count()
            return max(0, self.reindex() - before)
        self.flush()
        self._sweep_leftovers()
        started = time.time()
        fresh: list[Path] = []
        for folder in self._series_dirs_changed_since(since - _MTIME_SLACK_S):
            rel = folder.relative_to(self.root).as_posix() + "/"
            with self._lock:
                known = {
                    row[0]
                    for row in self._db.execute(
                        "SELECT path FROM instances WHERE path >= ? AND path < ?", (rel, rel[:-1] + "0")
                    )
                }
            fresh.extend(
                Path(e.path)
                for e in os.scandir(folder)
                if e.name.endswith(".dcm") and rel + e.name not in known
            )
        fresh.sort(key=lambda p: (p.name.count("~"), p.stat().st_mtime))
        parsed = self._parse_for_index(fresh)
        with self._lock, self._layout(exclusive=False), self._transaction() as conn:
            misfiled = self._insert_parsed(conn, parsed)
        self._quarantine_misfiled(misfiled)
        self._mark_scan_start(started)
        if parsed:
            log.info("adopted %d stored files that had no index row", len(parsed))
        return len(parsed)

    def _series_dirs_changed_since(self, since: float) -> list[Path]:
        changed = []
        for study in os.scandir(self.studies_dir):
            if not study.is_dir(follow_symlinks=False):
                continue
            for series in os.scandir(study.path):
                if (
                    series.is_dir(follow_symlinks=False)
                    and series.stat(follow_symlinks=False).st_mtime >= since
                ):
                    changed.append(Path(series.path))
        return changed

    def _last_scan_start(self) -> float | None:
        try:
            return float((self.root / SCAN_MARK_NAME).read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None

    def _mark_scan_start(self, started: float) -> None:
        write_bytes_atomic(self.root / SCAN_MARK_NAME, f"{started:.6f}\n".encode("ascii"))

    def _parse_for_index(self, paths: list[Path]) -> list[tuple[HeaderInfo, Path, int]]:
        """Header info of files about to be indexed; invalid ones go to quarantine."""
        parsed: list[tuple[HeaderInfo, Path, int]] = []
        for path in paths:
            try:
                data = path.read_bytes()
                parsed.append((inspect_part10(data), path, len(data)))
            except FileNotFoundError:
                continue  # deleted meanwhile
            except InvalidDataset as exc:
                self._quarantine(path, str(exc))
        return parsed

    def _insert_parsed(
        self, conn: sqlite3.Connection, parsed: list[tuple[HeaderInfo, Path, int]]
    ) -> list[Path]:
        """Index parsed files; returns those whose series belongs to another study (not indexed)."""
        misfiled: list[Path] = []
        for info, path, size in parsed:
            rel = path.relative_to(self.root).as_posix()
            conn.execute("DELETE FROM instances WHERE path = ?", (rel,))  # size changed: re-read it
            version = (
                1
                if "~" not in path.name
                else conn.execute(
                    "SELECT coalesce(max(version), 1) + 1 FROM instances WHERE sop_instance_uid = ?",
                    (info.sop_instance_uid,),
                ).fetchone()[0]
            )
            try:
                idx.insert_instance(conn, info, rel, size, version, "reindex", path.stat().st_mtime)
            except SeriesInOtherStudy:
                misfiled.append(path)
        return misfiled

    def _quarantine_misfiled(self, paths: list[Path]) -> None:
        for path in paths:
            self._quarantine(path, "its Series Instance UID belongs to another study")
        with self._series_lock:
            self._series_studies.clear()

    def reindex(self) -> int:
        """Bring the index in line with the files after a crash; returns the instances indexed.

        Rows whose file is gone are dropped, complete files without a row are added, files that
        are not valid DICOM are moved to ``quarantine/``. Reads every folder: the listener's
        start uses the cheaper :meth:`adopt_unindexed`.
        """
        self.flush()
        self._sweep_leftovers()
        started = time.time()
        with self._lock:
            indexed = {row[0]: row[1] for row in self._db.execute("SELECT path, size FROM instances")}
        on_disk = sorted(
            self.studies_dir.glob("*/*/*.dcm"), key=lambda p: (p.name.count("~"), p.stat().st_mtime)
        )
        parsed = self._parse_for_index(
            [p for p in on_disk if indexed.get(p.relative_to(self.root).as_posix()) != p.stat().st_size]
        )
        with self._lock, self._layout(exclusive=False), self._transaction() as conn:
            for rel in list(indexed):
                if not (self.root / rel).is_file():
                    study = conn.execute("SELECT study_uid FROM instances WHERE path = ?", (rel,)).fetchone()
                    conn.execute("DELETE FROM instances WHERE path = ?", (rel,))
                    if study:
                        idx.touch_study(conn, study[0])
            misfiled = [self.root / rel for rel in idx.misfiled_instances(conn)]  # indexed by older versions
            for path in misfiled:
                study = conn.execute(
                    "DELETE FROM instances WHERE path = ? RETURNING study_uid",
                    (path.relative_to(self.root).as_posix(),),
                ).fetchone()
                idx.touch_study(conn, study[0])
            misfiled += self._insert_parsed(conn, parsed)
            idx.prune_empty(conn)
            total = int(conn.execute("SELECT count(*) FROM instances").fetchone()[0])
        self._quarantine_misfiled(misfiled)
        self._mark_scan_start(started)
        log.info("reindex: %d instances indexed, %d files (re)read", total, len(parsed))
        return total

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self.root / "quarantine" / f"{uuid.uuid4().hex}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        log.error("moved a stored file to quarantine/%s (%s)", target.name, reason)
