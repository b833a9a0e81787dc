"""The archive stores bytes exactly, indexes what the browser needs and refuses bad objects cleanly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicom_net.archive import Archive, InvalidDataset
from dicom_net.synthetic import radiograph
from dicom_net.validation import PixelLengthMismatch, UIDMismatch
from tests.dicom_net.dicom_objects import part10, part10_as_is, small_ct


def archive_state(archive: Archive) -> tuple[list[Path], int, list[Path]]:
    """(stored files, index rows, temp leftovers)."""
    files = sorted(archive.studies_dir.rglob("*.dcm"))
    return files, archive.instance_count(), sorted(archive.tmp_dir.iterdir())


def test_stores_bytes_unchanged_and_indexes_browser_fields(tmp_path: Path) -> None:
    patient = {
        "name": "DOE^JANE",
        "id": "P123",
        "birth_date": "19800102",
        "sex": "F",
        "accession": "ACC9",
        "referring": "HOUSE^G",
        "study_description": "Chest CT",
        "study_date": "20240115",
    }
    slices = small_ct(3, patient=patient, series_description="Axial 1mm")
    archive = Archive(tmp_path / "arc")
    blobs = [part10(ds) for ds in reversed(slices)]  # stored out of order on purpose
    outcomes = [archive.store_bytes(b, source="TEST") for b in blobs]

    assert [o.status for o in outcomes] == ["stored"] * 3
    for blob, outcome in zip(blobs, outcomes):
        assert outcome.path.read_bytes() == blob  # no re-encoding
        assert outcome.path.is_relative_to(archive.root / "studies" / slices[0].StudyInstanceUID)
    [study] = archive.studies()
    assert (study.patient_name, study.patient_id, study.birth_date, study.sex) == (
        "DOE^JANE",
        "P123",
        "19800102",
        "F",
    )
    assert (study.study_date, study.description, study.accession, study.referring_physician) == (
        "20240115",
        "Chest CT",
        "ACC9",
        "HOUSE^G",
    )
    assert study.modalities == ["CT"] and study.series_count == 1 and study.instance_count == 3
    [series] = archive.series(study.study_uid)
    assert (series.modality, series.series_number, series.description, series.body_part) == (
        "CT",
        1,
        "Axial 1mm",
        "CHEST",
    )
    assert archive.find_series(series.series_uid) == series
    instances = archive.instances(series.series_uid)
    assert [i.instance_number for i in instances] == [1, 2, 3]
    assert [i.sop_instance_uid for i in instances] == [ds.SOPInstanceUID for ds in slices]
    first = instances[0]
    assert (first.rows, first.columns, first.frames, first.transfer_syntax) == (
        32,
        32,
        1,
        "1.2.840.10008.1.2.1",
    )
    assert first.path.is_absolute() and first.path.read_bytes() == part10(slices[0])


def test_filters_are_case_insensitive_substrings_and_date_ranges(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    a = small_ct(
        1,
        patient={
            "name": "Müller^Jürgen",
            "id": "ID-A",
            "study_date": "20240110",
            "accession": "ACC-1",
            "study_description": "CT Thorax",
        },
    )[0]
    b = radiograph(
        patient={
            "name": "SMITH^ANNA",
            "id": "ID-B",
            "study_date": "20230301",
            "accession": "XR-7",
            "study_description": "Chest PA",
        },
        rows=64,
        columns=48,
    )
    archive.store_bytes(part10(a))
    archive.store_bytes(part10(b))

    def uids(**f: object) -> set[str]:
        return {s.study_uid for s in archive.studies(**f)}

    assert uids(patient_name="müller jürgen") == {a.StudyInstanceUID}
    assert uids(patient_name="anna") == {b.StudyInstanceUID}
    assert uids(patient_id="id-") == {a.StudyInstanceUID, b.StudyInstanceUID}
    assert uids(accession="xr") == {b.StudyInstanceUID}
    assert uids(description="thorax") == {a.StudyInstanceUID}
    assert uids(modality="dx") == {b.StudyInstanceUID}
    assert uids(date_from=dt.date(2024, 1, 1)) == {a.StudyInstanceUID}
    assert uids(date_to="2023-12-31") == {b.StudyInstanceUID}
    assert uids(date_from="20230301", date_to="20230301") == {b.StudyInstanceUID}
    assert uids(patient_name="nobody") == set()
    assert [s.study_uid for s in archive.studies()] == [
        a.StudyInstanceUID,
        b.StudyInstanceUID,
    ]  # newest first
    with pytest.raises(TypeError):
        archive.studies(colour="red")


def test_same_bytes_twice_is_a_no_op(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    blob = part10(small_ct(1)[0])
    first = archive.store_bytes(blob)
    second = archive.store_bytes(blob)
    assert (first.status, second.status) == ("stored", "duplicate")
    assert second.path == first.path
    files, rows, tmp = archive_state(archive)
    assert (len(files), rows, tmp) == (1, 1, [])


def test_different_bytes_same_uid_keeps_both_versions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = Archive(tmp_path / "arc")
    ds = small_ct(1)[0]
    original = part10(ds)
    ds.SeriesDescription = "corrected"
    corrected = part10(ds)
    assert archive.store_bytes(original).status == "stored"
    with caplog.at_level("WARNING"):
        outcome = archive.store_bytes(corrected)
    assert outcome.status == "version"
    assert ds.SOPInstanceUID in caplog.text and "DOE" not in caplog.text
    assert archive.store_bytes(corrected).status == "duplicate"  # the version itself is not stored twice
    files, rows, _ = archive_state(archive)
    assert len(files) == 2 and rows == 2
    assert {f.read_bytes() for f in files} == {original, corrected}
    newest = archive.instances(ds.SeriesInstanceUID)
    assert len(newest) == 1 and newest[0].version == 2 and newest[0].path.read_bytes() == corrected
    assert [i.version for i in archive.instances(ds.SeriesInstanceUID, all_versions=True)] == [1, 2]
    assert archive.study(ds.StudyInstanceUID).instance_count == 1  # one SOP instance, two versions


def _truncated(blob: bytes) -> bytes:
    return blob[: len(blob) - 100]


def _garbage(blob: bytes) -> bytes:
    return blob[:132] + b"\x13\x37" * 500


@pytest.mark.parametrize(
    "make_bad, error",
    [
        (_truncated, InvalidDataset),
        (lambda b: b[:300], InvalidDataset),  # cut inside the file meta
        (_garbage, InvalidDataset),
        (lambda b: b"not dicom at all" * 40, InvalidDataset),
    ],
)
def test_broken_bytes_are_refused_and_leave_nothing(tmp_path: Path, make_bad: object, error: type) -> None:
    archive = Archive(tmp_path / "arc")
    with pytest.raises(error):
        archive.store_bytes(make_bad(part10(small_ct(1)[0])))  # type: ignore[operator]
    assert archive_state(archive) == ([], 0, [])
    assert archive.studies() == []


def test_uid_mismatch_between_meta_and_dataset_is_refused(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    ds = small_ct(1)[0]
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    with pytest.raises(UIDMismatch):
        archive.store_bytes(part10_as_is(ds))
    ds = small_ct(1)[0]
    with pytest.raises(UIDMismatch):
        archive.store_bytes(part10(ds), expected_sop_class="1.2.840.10008.5.1.4.1.1.4")  # MR, dataset is CT
    assert archive_state(archive) == ([], 0, [])


@pytest.mark.parametrize("delta", [-2, +2, -512])
def test_pixel_length_disagreeing_with_attributes_is_refused(tmp_path: Path, delta: int) -> None:
    archive = Archive(tmp_path / "arc")
    ds = small_ct(1)[0]
    pixels = bytes(ds.PixelData)
    ds.PixelData = pixels[:delta] if delta < 0 else pixels + b"\0" * delta
    with pytest.raises(PixelLengthMismatch):
        archive.store_bytes(part10(ds))
    ds.Rows = 31  # and the other way round: attributes changed, pixels not
    ds.PixelData = pixels
    with pytest.raises(PixelLengthMismatch):
        archive.store_bytes(part10(ds))
    assert archive_state(archive) == ([], 0, [])


def test_change_cursor_reports_touched_studies(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    a, b = small_ct(2), small_ct(1)
    cursor = archive.change_cursor()
    archive.store_bytes(part10(a[0]))
    cursor, changed = archive.changes_since(cursor)
    assert changed == [a[0].StudyInstanceUID]
    assert archive.changes_since(cursor) == (cursor, [])
    archive.store_bytes(part10(b[0]))
    archive.store_bytes(part10(a[1]))
    archive.store_bytes(part10(a[1]))  # a duplicate changes nothing
    new_cursor, changed = archive.changes_since(cursor)
    assert sorted(changed) == sorted({a[0].StudyInstanceUID, b[0].StudyInstanceUID}) and new_cursor > cursor
    # a second Archive on the same folder (the GUI beside the listener process) sees the same cursor
    assert Archive(archive.root).change_cursor() == new_cursor


def test_delete_study_removes_rows_then_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    keep, drop = small_ct(2), small_ct(3)
    for ds in keep + drop:
        archive.store_bytes(part10(ds))
    cursor = archive.change_cursor()
    assert archive.delete_study(drop[0].StudyInstanceUID) == 3
    assert [s.study_uid for s in archive.studies()] == [keep[0].StudyInstanceUID]
    assert not (archive.studies_dir / drop[0].StudyInstanceUID).exists()
    assert len(list(archive.studies_dir.rglob("*.dcm"))) == 2 and archive.instance_count() == 2
    assert archive.changes_since(cursor)[1] == [drop[0].StudyInstanceUID]
    assert list(archive.trash_dir.iterdir()) == []


def test_reindex_rebuilds_a_lost_index_and_drops_rows_of_missing_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    slices = small_ct(4)
    paths = [archive.store_bytes(part10(ds)).path for ds in slices]
    archive.close()
    (tmp_path / "arc" / "index.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "arc" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    archive = Archive(tmp_path / "arc")
    assert archive.studies() == []
    assert archive.reindex() == 4
    [study] = archive.studies()
    assert study.instance_count == 4 and study.patient_name == "PHANTOM^CT"
    paths[0].unlink()  # a file lost behind the index's back
    (archive.tmp_dir / "999999-deadbeef.part").write_bytes(b"partial")  # a dead writer's temp file
    junk = paths[1].with_name("1.2.3.dcm")
    junk.write_bytes(b"garbage that claims to be DICOM")
    assert archive.reindex() == 3
    assert [i.path for i in archive.instances(slices[0].SeriesInstanceUID)] == paths[1:]
    assert list(archive.tmp_dir.iterdir()) == []
    assert not junk.exists() and len(list((archive.root / "quarantine").iterdir())) == 1


def test_corrupt_index_file_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "arc")
    archive.store_bytes(part10(small_ct(1)[0]))
    archive.close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "arc" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    (tmp_path / "arc" / "index.sqlite").write_bytes(b"this is not an sqlite database" * 100)
    archive = Archive(tmp_path / "arc")
    assert list((tmp_path / "arc").glob("index.sqlite.corrupt-*"))
    assert archive.instance_count() == 1 and len(archive.studies()) == 1  # rebuilt from the files


def test_minimum_free_space_refuses_before_the_disk_is_full(tmp_path: Path) -> None:
    from dicom_net.archive import StorageFull

    archive = Archive(tmp_path / "arc", min_free_bytes=1 << 62)
    with pytest.raises(StorageFull):
        archive.store_bytes(part10(small_ct(1)[0]))
    assert archive_state(archive) == ([], 0, [])


@pytest.mark.parametrize(
    "charset, name",
    [
        ("ISO_IR 100", "Müller^Jürgen"),  # Latin-1 bytes
        ("ISO_IR 192", "Ørsted^Åse"),  # UTF-8 bytes
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),  # ISO 2022 escapes: pydicom decodes
    ],
)
def test_patient_names_are_indexed_in_every_character_set(tmp_path: Path, charset: object, name: str) -> None:
    ds = small_ct(1)[0]
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    archive = Archive(tmp_path / "arc")
    archive.store_bytes(part10(ds))
    [study] = archive.studies()
    assert study.patient_name == name
    assert archive.studies(patient_name=name.split("^")[0].lower()) == [study]
