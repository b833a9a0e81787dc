"""Study browser model without widgets: filters, live changes from another writer, receiving counts."""

from __future__ import annotations

import pytest

from app.reading.study_list import StudyBrowserLogic, StudyFilter
from dicom_net.archive import Archive
from dicom_net.synthetic import SeriesGeometry, ct_series, radiograph, write_datasets


def _store(archive: Archive, folder, datasets) -> None:
    for f in write_datasets(datasets, folder):
        archive.store_file(f)


@pytest.fixture
def two_patients(archive, tmp_path):
    ann = {
        "name": "SMITH^ANN",
        "id": "P001",
        "birth_date": "19700101",
        "sex": "F",
        "accession": "ACC1",
        "study_description": "CT chest",
    }
    bob = {
        "name": "JONES^BOB",
        "id": "P002",
        "birth_date": "19800101",
        "sex": "M",
        "accession": "ACC2",
        "study_description": "Chest radiograph",
    }
    _store(archive, tmp_path / "a", ct_series(SeriesGeometry(rows=16, columns=16, slices=3), patient=ann))
    _store(archive, tmp_path / "b", [radiograph(patient=bob)])
    return archive


def test_filters_by_patient_modality_accession_and_description(two_patients):
    logic = StudyBrowserLogic(two_patients)
    assert len(logic.rows) == 2
    logic.set_filter(StudyFilter(patient_name="smith"))
    assert [r.patient_id for r in logic.rows] == ["P001"]
    logic.set_filter(StudyFilter(modality="dx"))
    assert [r.patient_id for r in logic.rows] == ["P002"]
    logic.set_filter(StudyFilter(accession="acc1"))
    assert [r.patient_id for r in logic.rows] == ["P001"]
    logic.set_filter(StudyFilter(description="radiograph"))
    assert [r.patient_id for r in logic.rows] == ["P002"]
    logic.set_filter(StudyFilter(date_from="2000-01-01", date_to="2999-12-31"))
    assert len(logic.rows) == 2
    logic.set_filter(StudyFilter(date_to="1999-12-31"))
    assert logic.rows == []


def test_malformed_date_is_refused_and_filter_kept(two_patients):
    logic = StudyBrowserLogic(two_patients)
    logic.set_filter(StudyFilter(patient_id="P002"))
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        logic.set_filter(StudyFilter(date_from="22/11/2026"))
    assert logic.filter.patient_id == "P002" and len(logic.rows) == 1


def test_poll_sees_studies_written_by_another_archive_instance_with_receiving_count(archive, tmp_path):
    now = [100.0]
    logic = StudyBrowserLogic(archive, clock=lambda: now[0])
    assert logic.poll() == [] and logic.rows == []
    other = Archive(archive.root)  # stands in for the listener process writing the same archive
    patient = {
        "name": "NEW^ONE",
        "id": "P9",
        "birth_date": "",
        "sex": "O",
        "accession": "A9",
        "study_description": "Incoming",
    }
    files = write_datasets(
        ct_series(SeriesGeometry(rows=16, columns=16, slices=4), patient=patient), tmp_path / "in"
    )
    for f in files[:2]:
        other.store_file(f)
    changed = logic.poll()
    assert len(changed) == 1 and logic.rows[0].instance_count == 2
    assert logic.status_text(logic.rows[0]) == "receiving... 2 images"
    for f in files[2:]:
        other.store_file(f)
    logic.poll()
    assert logic.status_text(logic.rows[0]) == "receiving... 4 images"
    assert logic.last_received.study_uid == changed[0]
    now[0] += 10
    assert logic.status_text(logic.rows[0]) == ""
    other.delete_study(changed[0])
    assert logic.poll() == changed and logic.rows == []
    other.close()
