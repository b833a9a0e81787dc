"""A series belongs to one study, and the same object from two senders is stored once."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicom_net.archive import Archive, SeriesInOtherStudy
from dicom_net.header_scan import read_meta
from dicom_net.listener import STATUS_SUCCESS, StoreHandler
from dicom_net.listener_status import ListenerStats
from dicom_net.part10 import file_meta_header
from tests.dicom_net.dicom_objects import part10, small_ct


def _two_studies_one_series() -> tuple[bytes, bytes]:
    """Two slices of one series, the second claiming another Study Instance UID."""
    first, second = small_ct(2)
    second.StudyInstanceUID = generate_uid()
    return part10(first), part10(second)


def read_study_uid(blob: bytes) -> str:
    return dcmread(io.BytesIO(blob), stop_before_pixels=True).StudyInstanceUID


def _c_store(blob: bytes) -> tuple[str, str, str, list[bytes]]:
    """What a C-STORE of a Part-10 file hands the store handler: command UIDs, syntax, dataset."""
    meta, start = read_meta(blob)
    uid = [meta[e].rstrip(b"\0").decode() for e in (0x0002, 0x0003, 0x0010)]
    return uid[0], uid[1], uid[2], [blob[start:]]


def _every_listed_study_has_its_series(archive: Archive) -> None:
    for study in archive.studies():
        series = archive.series(study.study_uid)
        assert study.series_count == len(series) > 0, study.study_uid
        for record in series:
            assert {i.study_uid for i in archive.instances(record.series_uid)} == {study.study_uid}


def test_a_series_arriving_under_a_second_study_is_refused_and_reindex_keeps_every_study(
    tmp_path: Path,
) -> None:
    archive = Archive(tmp_path / "arc")
    first, second = _two_studies_one_series()
    stored = archive.store_bytes(first)
    with pytest.raises(SeriesInOtherStudy) as refused:
        archive.store_bytes(second)
    assert refused.value.status == 0xA900 and "another study" in str(refused.value)
    [study] = archive.studies()
    assert (study.study_uid, study.series_count, study.instance_count) == (stored.study_uid, 1, 1)
    assert len(list(archive.studies_dir.rglob("*.dcm"))) == 1
    assert archive.reindex() == 1
    assert [s.study_uid for s in archive.studies()] == [stored.study_uid]
    _every_listed_study_has_its_series(archive)
    archive.close()


def test_the_listener_refuses_it_while_the_first_row_still_waits_for_its_batch(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    handler = StoreHandler(archive, ListenerStats())
    first, second = _two_studies_one_series()

    assert handler.store(*_c_store(first), "CT1") == (STATUS_SUCCESS, "")
    status, comment = handler.store(
        *_c_store(second), "CT1"
    )  # the first object's index row is not committed yet
    assert status == 0xA900 and comment == "Series Instance UID already belongs to another study"
    assert archive.reindex() == 1
    assert len(archive.studies()) == 1
    _every_listed_study_has_its_series(archive)
    archive.close()


def test_reindex_moves_an_older_archives_misfiled_object_aside_and_lists_every_study(tmp_path: Path) -> None:
    """Archives written before the refusal can hold such an object: as a file only, or with its row."""
    archive = Archive(tmp_path / "arc")
    first, second = _two_studies_one_series()
    other_series = small_ct(1)[0]  # a proper series of the second study
    stored = archive.store_bytes(first)
    first_study, second_study = stored.study_uid, read_study_uid(second)
    other_series.StudyInstanceUID = second_study
    archive.store_bytes(part10(other_series))
    misfiled = archive.studies_dir / second_study / stored.series_uid / "misfiled.dcm"
    misfiled.parent.mkdir(parents=True)
    misfiled.write_bytes(second)  # as the older listener stored it
    assert archive.reindex() == 2
    assert {s.study_uid for s in archive.studies()} == {first_study, second_study}
    _every_listed_study_has_its_series(archive)
    assert not misfiled.exists() and len(list((archive.root / "quarantine").iterdir())) == 1
    archive.close()

    shutil.rmtree(tmp_path / "arc" / "quarantine")
    misfiled.write_bytes(second)  # and now with the row the older version inserted
    with sqlite3.connect(tmp_path / "arc" / "index.sqlite") as db:
        row = db.execute("SELECT * FROM instances WHERE study_uid = ?", (first_study,)).fetchone()
        columns = [c[1] for c in db.execute("PRAGMA table_info(instances)")]
        values = dict(zip(columns, row))
        values.update(pk=None, study_uid=second_study, path=misfiled.relative_to(tmp_path / "arc").as_posix())
        values.update(size=misfiled.stat().st_size, sop_instance_uid="1.2.3.4.5")
        db.execute(f"INSERT INTO instances VALUES ({','.join('?' * len(values))})", list(values.values()))
    archive = Archive(tmp_path / "arc")
    archive.reindex()
    assert {s.study_uid for s in archive.studies()} == {first_study, second_study}
    _every_listed_study_has_its_series(archive)
    assert not misfiled.exists() and len(list((archive.root / "quarantine").iterdir())) == 1
    archive.close()


def test_the_same_object_from_two_calling_aes_is_one_duplicate_not_a_version(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    stats = ListenerStats()
    handler = StoreHandler(archive, stats)
    ds = small_ct(1)[0]
    sop_class, sop_instance, syntax, [dataset] = _c_store(part10(ds))
    for calling in ("CT1", "WORKSTATION2", "CT1"):
        assert handler.store(sop_class, sop_instance, syntax, [dataset], calling)[0] == STATUS_SUCCESS
    ds.SeriesDescription = "corrected"
    *_, [corrected_dataset] = _c_store(part10(ds))
    for calling in ("CT1", "PACS"):
        assert (
            handler.store(sop_class, sop_instance, syntax, [corrected_dataset], calling)[0] == STATUS_SUCCESS
        )
    counts = stats.snapshot()["counts"]
    assert (counts["stored"], counts["versions"], counts["duplicates"]) == (1, 1, 3)
    files = sorted(archive.studies_dir.rglob("*.dcm"), key=lambda p: p.name.count("~"))
    assert [f.read_bytes().endswith(d) for f, d in zip(files, (dataset, corrected_dataset))] == [True, True]
    assert [i.version for i in archive.instances(ds.SeriesInstanceUID, all_versions=True)] == [1, 2]
    # the importer's path: a file carrying another Source AE Title in its meta is the same object
    again = file_meta_header(sop_class, sop_instance, syntax, "IMPORT") + dataset
    assert archive.store_bytes(again).status == "duplicate"
    assert len(list(archive.studies_dir.rglob("*.dcm"))) == 2
    archive.close()
