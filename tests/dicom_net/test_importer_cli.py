"""Import (files, folders, DICOMDIR, zip; progress and cancel) and the import/archive commands."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import FileSet
from pydicom.filewriter import write_dataset
from pydicom.uid import ImplicitVRLittleEndian

from app.cli.main import main
from dicom_net.archive import Archive
from dicom_net.importer import import_paths
from dicom_net.synthetic import radiograph, write_datasets
from tests.dicom_net.dicom_objects import part10, sample_file, small_ct


def test_import_folder_zip_and_loose_file_with_progress(tmp_path: Path) -> None:
    folder_series = write_datasets(small_ct(6), tmp_path / "folder" / "ct")
    (tmp_path / "folder" / "README.txt").write_text("not dicom")
    zipped = small_ct(3)
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for ds in zipped:
            zf.writestr(f"deep/dir/{ds.SOPInstanceUID}", part10(ds))
    loose = sample_file("CT_small.dcm")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(part10(small_ct(1)[0])[:-50])
    calls: list[tuple[int, int]] = []
    archive = Archive(tmp_path / "arc")

    report = import_paths(
        archive,
        [tmp_path / "folder", tmp_path / "study.zip", loose, truncated],
        progress=lambda done, total: calls.append((done, total)),
    )

    assert (report.stored, report.duplicates, report.skipped) == (10, 0, 1)
    assert [label for label, _ in report.failed] == [str(truncated.absolute())]
    assert calls[0] == (0, 12) and calls[-1] == (12, 12) and len(calls) == 13
    assert len(report.study_uids) == 3 and archive.instance_count() == 10
    stored = {
        i.sop_instance_uid: i.path
        for s in archive.studies()
        for se in archive.series(s.study_uid)
        for i in archive.instances(se.series_uid)
    }
    assert stored[zipped[1].SOPInstanceUID].read_bytes() == part10(zipped[1])
    assert stored[folder_series[0].stem].read_bytes() == folder_series[0].read_bytes()
    again = import_paths(archive, [tmp_path / "folder"])
    assert (again.stored, again.duplicates) == (0, 6)


def test_import_dicomdir_imports_the_files_it_references(tmp_path: Path) -> None:
    fs = FileSet()
    slices = small_ct(3)
    dx = radiograph(rows=64, columns=48)
    for ds in slices + [dx]:
        fs.add(ds)
    fs.write(tmp_path / "media")
    archive = Archive(tmp_path / "arc")
    report = import_paths(archive, [tmp_path / "media" / "DICOMDIR"])
    assert report.stored == 4 and not report.failed
    assert {s.study_uid for s in archive.studies()} == {slices[0].StudyInstanceUID, dx.StudyInstanceUID}
    whole_folder = import_paths(archive, [tmp_path / "media"])  # the DICOMDIR itself is not an image
    assert (whole_folder.duplicates, whole_folder.skipped, whole_folder.stored) == (4, 1, 0)


def test_import_stops_between_files_when_cancelled(tmp_path: Path) -> None:
    write_datasets(small_ct(20), tmp_path / "src")
    archive = Archive(tmp_path / "arc")
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 5:
            cancel.set()

    report = import_paths(archive, [tmp_path / "src"], progress=progress, cancel=cancel)
    assert report.cancelled and report.stored == 5 and archive.instance_count() == 5
    assert import_paths(archive, [tmp_path / "src"], cancel=lambda: False).stored == 15


def test_import_and_archive_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_datasets(
        small_ct(4, patient={"name": "CLI^PATIENT", "id": "CLI-1", "study_date": "20240202"}),
        tmp_path / "src",
    )
    arc = tmp_path / "arc"
    assert main(["import", str(tmp_path / "src"), "--archive", str(arc)]) == 0
    assert "4 stored" in capsys.readouterr().out
    assert main(["archive", "list", "--json", "--archive", str(arc)]) == 0
    [study] = json.loads(capsys.readouterr().out)
    assert (study["patient_name"], study["instance_count"], study["modalities"]) == ("CLI^PATIENT", 4, ["CT"])
    assert main(["archive", "list", "--archive", str(arc)]) == 0
    text = capsys.readouterr().out
    assert "CLI^PATIENT" in text and "20240202" in text
    with Archive(arc) as archive:
        [series] = archive.series(study["study_uid"])
        lost = archive.instances(series.series_uid)[0].path
    lost.unlink()
    assert main(["archive", "--reindex", "--archive", str(arc)]) == 0
    assert "3 instances" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "missing"), "--archive", str(arc)]) == 2
    assert files  # the sources are untouched by the import
    assert all(f.exists() for f in files)


def test_archive_defaults_to_the_data_directory(
    _private_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_datasets(small_ct(2), tmp_path / "src")
    assert main(["import", str(tmp_path / "src")]) == 0
    assert (_private_home / "archive" / "index.sqlite").exists()
    capsys.readouterr()
    assert main(["archive", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def _raw_implicit_little_endian(ds) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def test_import_accepts_a_raw_implicit_dataset_and_writes_a_part10_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = small_ct(1, rows=16)[0]
    raw = _raw_implicit_little_endian(ds)
    folder = tmp_path / "old-export"
    folder.mkdir()
    (folder / "IMG0001").write_bytes(raw)
    anonymous = small_ct(1, rows=16)[0]
    del anonymous.SOPInstanceUID
    (folder / "IMG0002").write_bytes(_raw_implicit_little_endian(anonymous))  # cannot be identified
    (folder / "README.TXT").write_bytes(b"exported 1998\n" * 4)
    archive = Archive(tmp_path / "arc")
    with caplog.at_level("WARNING", logger="dicom_net"):
        report = import_paths(archive, [folder])
    assert (report.stored, report.raw_datasets, report.skipped, report.failed) == (1, 1, 2, [])
    assert any(
        str(ds.SOPInstanceUID) in r.getMessage() and "no Part-10 header" in r.getMessage()
        for r in caplog.records
    )
    [record] = archive.instances(str(ds.SeriesInstanceUID))
    stored = record.path.read_bytes()
    assert stored[128:132] == b"DICM" and stored.endswith(raw)  # the dataset bytes are kept after the header
    back = dcmread(record.path)
    assert back.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(back.pixel_array, ds.pixel_array)
    assert import_paths(archive, [folder]).duplicates == 1  # the same raw file again: same Part-10 bytes
