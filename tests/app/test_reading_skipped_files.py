"""An odd file in an archived series: the series still opens, and the status bar says what was left out."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


def test_series_with_an_odd_file_opens_and_the_status_bar_names_it(
    archive, demo_files: list[Path], make_window, qtbot, tmp_path: Path
) -> None:
    for f in demo_files:
        archive.store_file(f)
    ct = sorted(
        (
            pydicom.dcmread(f)
            for f in demo_files
            if pydicom.dcmread(f, stop_before_pixels=True).Modality == "CT"
        ),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    odd = pydicom.dcmread(ct[-1].filename)  # one more slice of the same series, with a broken LUT
    odd.SOPInstanceUID = odd.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    odd.ImagePositionPatient = [*odd.ImagePositionPatient[:2], float(odd.ImagePositionPatient[2]) + 1.5]
    odd.ModalityLUTSequence = [Dataset()]
    odd.save_as(tmp_path / "odd.dcm")
    archive.store_file(tmp_path / "odd.dcm")

    window = make_window(archive)
    session = window.open_study(window.browser_logic.rows[0].study_uid)
    ct_uid = ct[0].SeriesInstanceUID
    qtbot.waitUntil(
        lambda: ct_uid in session.volumes and window.reading.viewports[0].view is not None, timeout=60000
    )
    assert session.volumes[ct_uid].voxels.shape[0] == len(ct)  # the odd slice is not in the volume
    (skipped,) = session.skipped[ct_uid]
    assert skipped.kind == "unreadable"
    message = window.statusBar().currentMessage()
    assert message.startswith("Not loaded from this series: ")
    assert f"{skipped.path.name}: Modality LUT Sequence has no usable item" in message
