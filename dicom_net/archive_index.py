"""The archive's SQLite index (WAL): schema, row records and the queries a study browser needs.

Free-text search columns are stored case-folded (``*_fold``) so that substring filters are
case-insensitive for every script, not only ASCII.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from dicom_net.validation import HeaderInfo, InvalidDataset

SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL, patient_name TEXT NOT NULL, birth_date TEXT NOT NULL, sex TEXT NOT NULL,
    name_fold TEXT NOT NULL, id_fold TEXT NOT NULL,
    UNIQUE (patient_id, patient_name, birth_date)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patients(pk),
    study_date TEXT NOT NULL, study_time TEXT NOT NULL, description TEXT NOT NULL,
    accession TEXT NOT NULL, referring_physician TEXT NOT NULL,
    description_fold TEXT NOT NULL, accession_fold TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL, series_number INTEGER, description TEXT NOT NULL, body_part TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE TABLE IF NOT EXISTS instances (
    pk INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL REFERENCES series(series_uid), study_uid TEXT NOT NULL,
    instance_number INTEGER, transfer_syntax TEXT NOT NULL,
    frames INTEGER NOT NULL, rows INTEGER NOT NULL, columns INTEGER NOT NULL,
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, version INTEGER NOT NULL,
    source TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS instances_sop ON instances(sop_instance_uid);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS changes (study_uid TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS changes_seq ON changes(seq);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES ('changes', 0);
"""


class SeriesInOtherStudy(InvalidDataset):
    """The object's Series Instance UID is filed under another Study Instance UID already.

    A series belongs to one study; indexing it under a second one would list that study with no
    series (and drop it at the next reindex) while its images showed up in the first study's series.
    """

    def __init__(self, series_uid: str) -> None:
        super().__init__("Series Instance UID already belongs to another study", status=0xA900)
        self.series_uid = series_uid


def series_study(conn: sqlite3.Connection, series_uid: str) -> str | None:
    """The study the index files a series under, or None for a series it does not know."""
    row = conn.execute("SELECT study_uid FROM series WHERE series_uid = ?", (series_uid,)).fetchone()
    return row[0] if row else None


def misfiled_instances(conn: sqlite3.Connection) -> list[str]:
    """Paths of instance rows whose series the index files under another study (older archives)."""
    rows = conn.execute(
        "SELECT i.path FROM instances i JOIN series s ON s.series_uid = i.series_uid "
        "WHERE s.study_uid != i.study_uid"
    )
    return [row[0] for row in rows]


def fold(text: str) -> str:
    """Case- and separator-insensitive form of a name or description for substring search."""
    return text.replace("^", " ").casefold()


@dataclass(frozen=True)
class StudyRecord:
    study_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    description: str
    accession: str
    referring_physician: str
    modalities: list[str]
    series_count: int
    instance_count: int
    received_at: float


@dataclass(frozen=True)
class SeriesRecord:
    series_uid: str
    study_uid: str
    modality: str
    series_number: int | None
    description: str
    body_part: str
    instance_count: int


@dataclass(frozen=True)
class InstanceRecord:
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    instance_number: int | None
    transfer_syntax: str
    frames: int
    rows: int
    columns: int
    path: Path
    size: int
    version: int


def connect(db_path: Path, timeout_s: float = 60.0) -> sqlite3.Connection:
    """A connection in WAL mode that waits for other writers instead of failing."""
    conn = sqlite3.connect(db_path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    try:
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def touch_study(conn: sqlite3.Connection, study_uid: str) -> None:
    """Record that a study changed (inside the caller's transaction)."""
    seq = conn.execute(
        "UPDATE counter SET value = value + 1 WHERE name = 'changes' RETURNING value"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO changes (study_uid, seq) VALUES (?, ?) "
        "ON CONFLICT(study_uid) DO UPDATE SET seq = excluded.seq",
        (study_uid, seq),
    )


def insert_instance(
    conn: sqlite3.Connection,
    info: HeaderInfo,
    rel_path: str,
    size: int,
    version: int,
    source: str,
    now: float,
) -> bool:
    """Insert patient/study/series rows as needed and the instance row; False if the path was indexed.

    Raises :class:`SeriesInOtherStudy` (nothing inserted) when the series belongs to another study.
    """
    owner = series_study(conn, info.series_uid)
    if owner is not None and owner != info.study_uid:
        raise SeriesInOtherStudy(info.series_uid)
    conn.execute(
        "INSERT OR IGNORE INTO patients (patient_id, patient_name, birth_date, sex, name_fold, id_fold) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            info.patient_id,
            info.patient_name,
            info.birth_date,
            info.sex,
            fold(info.patient_name),
            fold(info.patient_id),
        ),
    )
    patient_pk = conn.execute(
        "SELECT pk FROM patients WHERE patient_id = ? AND patient_name = ? AND birth_date = ?",
        (info.patient_id, info.patient_name, info.birth_date),
    ).fetchone()[0]
    conn.execute(
        "INSERT OR IGNORE INTO studies (study_uid, patient_pk, study_date, study_time, description, accession, "
        "referring_physician, description_fold, accession_fold, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            info.study_uid,
            patient_pk,
            info.study_date,
            info.study_time,
            info.study_description,
            info.accession,
            info.referring_physician,
            fold(info.study_description),
            fold(info.accession),
            now,
        ),
    )
    conn.execute(
        "INSERT OR IGNORE INTO series (series_uid, study_uid, modality, series_number, description, body_part) "
        "VALUES (?,?,?,?,?,?)",
        (
            info.series_uid,
            info.study_uid,
            info.modality,
            info.series_number,
            info.series_description,
            info.body_part,
        ),
    )
    cur = conn.execute(
        "INSERT OR IGNORE INTO instances (sop_instance_uid, sop_class_uid, series_uid, study_uid, instance_number, "
        "transfer_syntax, frames, rows, columns, path, size, version, source, received_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            info.sop_instance_uid,
            info.sop_class_uid,
            info.series_uid,
            info.study_uid,
            info.instance_number,
            info.transfer_syntax,
            info.frames,
            info.rows,
            info.columns,
            rel_path,
            size,
            version,
            source,
            now,
        ),
    )
    if cur.rowcount:
        touch_study(conn, info.study_uid)
    return bool(cur.rowcount)


def prune_empty(conn: sqlite3.Connection) -> None:
    """Drop series, studies and patients that no longer have instances (inside a transaction)."""
    conn.execute(
        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_uid = series.series_uid)"
    )
    conn.execute(
        "DELETE FROM studies WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.study_uid = studies.study_uid)"
    )
    conn.execute(
        "DELETE FROM patients WHERE NOT EXISTS (SELECT 1 FROM studies s WHERE s.patient_pk = patients.pk)"
    )


_STUDY_SELECT = """
SELECT st.study_uid, p.patient_name, p.patient_id, p.birth_date, p.sex, st.study_date, st.study_time,
       st.description, st.accession, st.referring_physician,
       (SELECT group_concat(DISTINCT se.modality) FROM series se WHERE se.study_uid = st.study_uid),
       (SELECT count(*) FROM series se WHERE se.study_uid = st.study_uid),
       (SELECT count(DISTINCT i.sop_instance_uid) FROM instances i WHERE i.study_uid = st.study_uid),
       st.received_at
FROM studies st JOIN patients p ON p.pk = st.patient_pk
"""


def _study_record(row: tuple) -> StudyRecord:
    modalities = sorted(m for m in (row[10] or "").split(",") if m)
    return StudyRecord(*row[:10], modalities, int(row[11]), int(row[12]), float(row[13]))


def query_studies(conn: sqlite3.Connection, filters: dict[str, object]) -> list[StudyRecord]:
    where: list[str] = []
    params: list[object] = []
    text_columns = {
        "patient_name": "p.name_fold",
        "patient_id": "p.id_fold",
        "accession": "st.accession_fold",
        "description": "st.description_fold",
    }
    for key, value in filters.items():
        if value in (None, ""):
            continue
        if key in text_columns:
            where.append(f"instr({text_columns[key]}, ?) > 0")
            params.append(fold(str(value)))
        elif key == "date_from":
            where.append("st.study_date >= ?")
            params.append(_dicom_date(value))
        elif key == "date_to":
            where.append("st.study_date <= ?")
            params.append(_dicom_date(value))
        elif key == "modality":
            where.append(
                "EXISTS (SELECT 1 FROM series se WHERE se.study_uid = st.study_uid AND upper(se.modality) = ?)"
            )
            params.append(str(value).upper())
        elif key == "study_uid":
            where.append("st.study_uid = ?")
            params.append(str(value))
        else:
            raise TypeError(f"unknown study filter {key!r}")
    sql = _STUDY_SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY st.study_date DESC, st.study_time DESC, st.received_at DESC"
    return [_study_record(row) for row in conn.execute(sql, params)]


def _dicom_date(value: object) -> str:
    """'YYYYMMDD' from a date, datetime or string ('2024-01-31' or '20240131')."""
    if hasattr(value, "strftime"):
        return value.strftime("%Y%m%d")  # type: ignore[union-attr]
    return str(value).replace("-", "")


def query_series(
    conn: sqlite3.Connection, study_uid: str | None = None, series_uid: str | None = None
) -> list[SeriesRecord]:
    sql = (
        "SELECT se.series_uid, se.study_uid, se.modality, se.series_number, se.description, se.body_part, "
        "(SELECT count(DISTINCT i.sop_instance_uid) FROM instances i WHERE i.series_uid = se.series_uid) "
        "FROM series se WHERE "
    )
    if series_uid is not None:
        rows = conn.execute(sql + "se.series_uid = ?", (series_uid,))
    else:
        rows = conn.execute(
            sql + "se.study_uid = ? ORDER BY se.series_number IS NULL, se.series_number, se.series_uid",
            (study_uid,),
        )
    return [SeriesRecord(*row) for row in rows]


def query_instances(
    conn: sqlite3.Connection, root: Path, series_uid: str, all_versions: bool = False
) -> list[InstanceRecord]:
    """Instances of a series by instance number; only the newest version of each SOP unless asked."""
    rows = conn.execute(
        "SELECT sop_instance_uid, sop_class_uid, series_uid, study_uid, instance_number, transfer_syntax, frames, "
        "rows, columns, path, size, version FROM instances WHERE series_uid = ? "
        "ORDER BY instance_number IS NULL, instance_number, sop_instance_uid, version",
        (series_uid,),
    ).fetchall()
    if not all_versions:
        newest: dict[str, tuple] = {}
        for row in rows:
            newest[row[0]] = row  # rows are ordered by version, so the last one wins
        keep = {id(r) for r in newest.values()}
        rows = [r for r in rows if id(r) in keep]
    return [InstanceRecord(*row[:9], root / row[9], int(row[10]), int(row[11])) for row in rows]
