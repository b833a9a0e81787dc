"""The fast header walk agrees with pydicom on every sample file and catches truncation."""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest

from dicom_net import validation
from dicom_net.validation import InvalidDataset, inspect_part10
from tests.dicom_net.dicom_objects import part10, small_ct


def _sample_files() -> list[Path]:
    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for root in roots for p in root.glob("*.dcm"))


def _outcome(fn, data: bytes):
    try:
        return fn(data)
    except InvalidDataset as exc:
        return type(exc).__name__


def test_fast_walk_and_pydicom_agree_on_every_sample() -> None:
    files = _sample_files()
    assert len(files) > 50
    fast_used = 0
    for path in files:
        data = path.read_bytes()
        by_pydicom = _outcome(lambda d: validation._inspect(d, None, None), data)
        assert _outcome(inspect_part10, data) == by_pydicom, path.name
        fast_used += validation._inspect_scanned(data, None, None) is not None
    assert fast_used > 0.7 * len(files)  # most objects never reach pydicom


def test_fields_match_what_pydicom_reads() -> None:
    for path in _sample_files():
        data = path.read_bytes()
        try:
            info = inspect_part10(data)
        except InvalidDataset:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert info.sop_instance_uid == ds.SOPInstanceUID, path.name
        assert info.patient_name == str(ds.get("PatientName", "")).strip(), path.name
        assert info.rows == int(ds.get("Rows", 0) or 0) and info.columns == int(ds.get("Columns", 0) or 0)
        assert info.frames == int(ds.get("NumberOfFrames", 1) or 1), path.name


def test_every_cut_of_an_image_is_refused() -> None:
    data = part10(small_ct(1, rows=64)[0])
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(132, len(data)), 300)):
        with pytest.raises(InvalidDataset):
            inspect_part10(data[:cut])
    assert inspect_part10(data).rows == 64
