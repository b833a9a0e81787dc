"""Seeded fuzzing of the listener's store entry point: whatever it answers Success is readable.

Every case goes through :meth:`StoreHandler.store`, the call the listener's data phase makes for
each received C-STORE (negotiated transfer syntax + dataset bytes as they arrived). Each object
answered Success must then be byte-exact on disk and read completely by pydicom and by DCMTK's
``dcmdump`` (see :mod:`tests.dicom_net.dicom_fuzz`). The unmutated seeds that both toolkits read
must all be accepted, so refusing everything cannot pass.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pydicom

from dicom_net.archive import Archive
from dicom_net.listener import STATUS_SUCCESS, StoreHandler
from dicom_net.listener_status import ListenerStats
from dicom_net.part10 import file_meta_header
from tests.dicom_net.conftest import need_dcmtk
from tests.dicom_net.dicom_fuzz import (
    Case,
    dcmdump_problems,
    mutated_cases,
    part10_meta,
    pydicom_problem,
    pydicom_tree,
)

MUTATIONS = 3000


def test_every_object_answered_success_is_read_completely_by_pydicom_and_dcmtk(tmp_path: Path) -> None:
    need_dcmtk("dcmdump")
    started = time.monotonic()
    archive = Archive(tmp_path / "arc")
    handler = StoreHandler(archive, ListenerStats(), sync_before_return=False)
    accepted, refused = [], []
    try:
        for case in mutated_cases(MUTATIONS):
            status, _ = handler.store(
                case.sop_class, case.sop_instance, case.transfer_syntax, [case.dataset], "FUZZ"
            )
            (accepted if status == STATUS_SUCCESS else refused).append(case)
        archive.flush()
    finally:
        archive.close()
    stored = {p.stem: p for p in (tmp_path / "arc" / "studies").rglob("*.dcm")}
    broken: dict[str, str] = {}
    paths: dict[Path, str] = {}
    trees: dict[Path, list] = {}
    for case in accepted:
        path = stored.get(case.sop_instance)
        if path is None:
            broken[case.label] = "answered Success but not stored"
            continue
        data = path.read_bytes()
        meta, start = part10_meta(data)
        if data[start:] != case.dataset or meta.get(0x0010) != case.transfer_syntax:
            broken[case.label] = "stored bytes differ from what was sent"
        elif problem := pydicom_problem(data):
            broken[case.label] = f"pydicom: {problem}"
        else:
            paths[path] = case.label
            trees[path] = pydicom_tree(data)
    for path, problem in dcmdump_problems(list(paths), trees=trees).items():
        broken[paths[path]] = f"dcmdump: {problem}"
    print(
        f"\nfuzz: {len(accepted) - len(broken)} accepted-valid / {len(refused)} refused / "
        f"{len(broken)} accepted-broken of {len(accepted) + len(refused)} cases "
        f"in {time.monotonic() - started:.0f} s"
    )
    assert not broken, "\n".join(f"{label}: {why}" for label, why in sorted(broken.items())[:40])
    assert len(refused) > MUTATIONS // 4 and len(accepted) > MUTATIONS // 10


# Readable by both toolkits but not storable, for reasons other than structure.
_NOT_STORABLE = {"MR_small_padded.dcm": "pixel data 128 bytes longer than its attributes call for"}


def _storable(case: Case, data: bytes) -> bool:
    """Readable by both toolkits, with the UIDs the archive needs, agreeing with the file meta."""
    if case.label in _NOT_STORABLE or pydicom_problem(data) is not None:
        return False
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    uids = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    return all(ds.get(k) for k in uids) and ds.SOPInstanceUID == case.sop_instance


def test_every_unmutated_seed_both_toolkits_read_is_accepted(tmp_path: Path) -> None:
    need_dcmtk("dcmdump")
    candidates: dict[Path, Case] = {}
    for number, case in enumerate(mutated_cases(0, max_bytes=4 * 1024 * 1024)):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(
            file_meta_header(case.sop_class, case.sop_instance, case.transfer_syntax) + case.dataset
        )
        if _storable(case, path.read_bytes()):
            candidates[path] = case
    for path in dcmdump_problems(list(candidates)):
        del candidates[path]
    assert len(candidates) > 100
    archive = Archive(tmp_path / "arc")
    handler = StoreHandler(archive, ListenerStats(), sync_before_return=False)
    refused = []
    try:
        for case in candidates.values():
            status, why = handler.store(
                case.sop_class, case.sop_instance, case.transfer_syntax, [case.dataset], "SEED"
            )
            if status != STATUS_SUCCESS:
                refused.append(f"{case.label}: {why}")
    finally:
        archive.close()
    assert not refused, "\n".join(refused)
