"""Anonymised export: identity removed, UIDs replaced consistently, pixels kept, zip atomic."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pydicom
import pytest

from app.anonymize import DeidPolicy, export_anonymized
from app.tasks import Cancelled
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
