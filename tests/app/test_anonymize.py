"""Anonymised export: identity removed, UIDs replaced consistently, pixels kept, zip atomic."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pydicom
import pytest

from app.services.anonymize import DeidPolicy, export_anonymized
from app.services.task_types import Cancelled
from dicom_net.synthetic import demo_study


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_study(tmp_path_factory.mktemp("demo"), ct_slices=6, ct_matrix=64)


def test_folder_export_removes_identity_and_remaps_uids_consistently(demo, tmp_path):
    files = sorted(demo.files)
    out = tmp_path / "anon"
    seen = []
    names = export_anonymized(files, out, progress=lambda d, t, _: seen.append((d, t)))
    assert len(names) == len(files) and seen[-1] == (len(files), len(files))
    originals = [pydicom.dcmread(f) for f in files]
    exported = [pydicom.dcmread(out / n) for n in names]
    for src, ds in zip(originals, exported):
        assert str(ds.PatientName) == "ANONYMOUS" and ds.PatientID == "ANON"
        assert ds.get("PatientBirthDate", "") == "" and ds.get("AccessionNumber", "") == ""
        assert ds.get("StudyDate", "") == ""
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        np.testing.assert_array_equal(ds.pixel_array, src.pixel_array)
        raw = (out / names[exported.index(ds)]).read_bytes()
        assert b"DEMO^PATIENT" not in raw and b"DEMO0001" not in raw and b"DEMO-ACC-1" not in raw
    # one study UID in and out; series and frame of reference mapped one-to-one
    assert len({ds.StudyInstanceUID for ds in exported}) == 1
    assert exported[0].StudyInstanceUID != originals[0].StudyInstanceUID
    pairs = {(s.SeriesInstanceUID, d.SeriesInstanceUID) for s, d in zip(originals, exported)}
    assert len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs}) == 3
    ct = [(s, d) for s, d in zip(originals, exported) if s.Modality == "CT"]
    assert len({d.FrameOfReferenceUID for _, d in ct}) == 1
    assert ct[0][1].FrameOfReferenceUID != ct[0][0].FrameOfReferenceUID


def test_dates_can_be_kept_by_policy(demo, tmp_path):
    names = export_anonymized(demo.files[:1], tmp_path / "o", policy=DeidPolicy(keep_dates=True))
    ds = pydicom.dcmread(tmp_path / "o" / names[0])
    assert ds.StudyDate == pydicom.dcmread(demo.files[0]).StudyDate != ""
    assert "dates retained" in ds.DeidentificationMethod


def test_zip_export_and_cancel_leaves_no_partial_zip(demo, tmp_path):
    target = tmp_path / "study.zip"
    names = export_anonymized(demo.files, target)
    with zipfile.ZipFile(target) as zf:
        assert sorted(zf.namelist()) == sorted(names)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        export_anonymized(demo.files, tmp_path / "cancelled.zip", cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.zip"]


def test_unwritable_destination_is_refused_up_front_with_a_clear_message(demo, tmp_path):
    from app.services.anonymize import ExportError

    not_a_folder = tmp_path / "report.txt"  # a file where a folder is needed (unwritable even for root)
    not_a_folder.write_text("keep me")
    for target in (not_a_folder / "out", not_a_folder / "study.zip"):
        with pytest.raises(ExportError, match=r"cannot write to .*report\.txt.*: .*Choose another folder"):
            export_anonymized(demo.files, target)
    assert not_a_folder.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


def test_export_failure_is_shown_in_the_main_window(demo_archive, make_window, qtbot, tmp_path):
    window = make_window(demo_archive)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    window.export_study(demo_archive.studies()[0].study_uid, as_zip=False, destination=blocker / "out")
    qtbot.waitUntil(lambda: "cannot write to" in window.statusBar().currentMessage(), timeout=10000)
    assert window.statusBar().currentMessage().startswith("Anonymised export failed: ExportError")


def test_a_second_study_never_overwrites_an_earlier_export_in_the_same_folder(demo, tmp_path):
    from app.services.anonymize import ExportError

    out = tmp_path / "anon"
    names = export_anonymized(demo.files[:2], out)
    before = {n: (out / n).read_bytes() for n in names}
    with pytest.raises(ExportError, match="already holds an anonymised export"):
        export_anonymized(demo.files[2:4], out)
    assert {n: (out / n).read_bytes() for n in names} == before
