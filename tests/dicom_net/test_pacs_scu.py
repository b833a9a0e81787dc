"""The PACS client against a real Orthanc (and DCMTK storescp / our listener as C-MOVE targets).

One Orthanc serves the whole module. Its content is loaded through its REST API (not our code),
so the query and retrieve tests do not depend on our C-STORE; the send tests use studies of
their own and check what Orthanc holds through REST.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_net import scu
from dicom_net.archive import Archive
from dicom_net.pacs_nodes import PacsNode
from dicom_net.paths import default_archive_dir
from dicom_net.synthetic import SeriesGeometry, ct_series, radiograph, write_datasets
from tests.peers import OrthancServer, PrivateNetwork, StoreScp, dcmtk_storescp, orthanc_module, peer_network

__all__ = ["orthanc_module", "peer_network"]  # fixtures used below

pytestmark = pytest.mark.network_peer

CALLING_AET = "HULUTEST"
MOVE_SCP_AET = "MOVESCP"
LISTENER_AET = "HULULSTN"


@dataclass
class Pacs:
    """Orthanc with two known studies, a storescp it can move to, and our node definition."""

    orthanc: OrthancServer
    node: PacsNode
    storescp: StoreScp
    network: PrivateNetwork
    study_a: str  # DOE^JANE, CT, 2024-01-15, ACC-A: series 1 (16 slices) + series 2 (4 slices)
    series_a1: str
    series_a2: str
    sops_a1: set[str]
    sops_a2: set[str]
    study_b: str  # SMITH^JOHN, DX, 2023-03-01, ACC-B: one radiograph
    study_big: str  # 150 tiny slices, for cancelling mid-retrieve
    big_count: int
    files_a1: dict[str, Path]


def _small_ct(tmp: Path, name: str, slices: int, rows: int, **kw: object) -> list[Path]:
    geometry = SeriesGeometry(rows=rows, columns=rows, slices=slices, pixel_spacing=(4.0, 4.0))
    return write_datasets(ct_series(geometry, **kw), tmp / name)


@pytest.fixture(scope="module")
def pacs(
    tmp_path_factory: pytest.TempPathFactory, orthanc_module: OrthancServer, peer_network: PrivateNetwork
) -> Iterator[Pacs]:
    tmp = tmp_path_factory.mktemp("pacs-data")
    orthanc = orthanc_module
    patient_a = {"name": "DOE^JANE", "id": "PA-1", "accession": "ACC-A", "study_date": "20240115"}
    study_a = generate_uid()
    a1 = _small_ct(tmp, "a1", 16, 64, patient=patient_a, study_uid=study_a, series_number=1)
    a2 = _small_ct(
        tmp, "a2", 4, 32, patient=patient_a, study_uid=study_a, series_number=2, series_description="Scout"
    )
    patient_b = {"name": "SMITH^JOHN", "id": "PB-2", "accession": "ACC-B", "study_date": "20230301"}
    dx = radiograph(rows=64, columns=48, patient=patient_b)
    b = write_datasets([dx], tmp / "b")
    big_study = generate_uid()
    big = _small_ct(tmp, "big", 150, 16, patient={"name": "BIG^SERIES", "id": "PC-3"}, study_uid=big_study)
    orthanc.upload([*a1, *a2, *b, *big])
    orthanc.add_modality("hulutest", CALLING_AET, peer_network.host_ip, 1)  # a port nobody listens on
    with dcmtk_storescp(tmp, MOVE_SCP_AET, network=peer_network) as scp:
        orthanc.add_modality("movescp", MOVE_SCP_AET, "127.0.0.1", scp.port)
        node = PacsNode(
            "orthanc", orthanc.aet, orthanc.host, orthanc.dicom_port, calling_aet=CALLING_AET, timeout_s=10
        )

        def sop(paths: list[Path]) -> set[str]:
            return {p.stem for p in paths}

        yield Pacs(
            orthanc,
            node,
            scp,
            peer_network,
            study_a,
            dcmread(a1[0]).SeriesInstanceUID,
            dcmread(a2[0]).SeriesInstanceUID,
            sop(a1),
            sop(a2),
            str(dx.StudyInstanceUID),
            big_study,
            len(big),
            {p.stem: p for p in a1},
        )


# ---------------------------------------------------------------------------------------------
# C-ECHO and association errors
# ---------------------------------------------------------------------------------------------


def test_echo_succeeds_with_success_status(pacs: Pacs) -> None:
    result = scu.echo(pacs.node)
    assert result.ok and result.status == 0x0000


def test_wrong_called_ae_title_is_rejected_with_reason(pacs: Pacs) -> None:
    wrong = PacsNode(
        "wrong", "NOT_ORTHANC", pacs.orthanc.host, pacs.orthanc.dicom_port, calling_aet=CALLING_AET
    )
    with pytest.raises(scu.AssociationRejected, match="called AE title not recognised") as info:
        scu.echo(wrong)
    assert "wrong" in str(info.value)


def test_unknown_calling_ae_title_is_refused_for_query_and_retrieve(pacs: Pacs, tmp_path: Path) -> None:
    stranger = PacsNode(
        "orthanc", pacs.orthanc.aet, pacs.orthanc.host, pacs.orthanc.dicom_port, calling_aet="STRANGER"
    )
    with pytest.raises(scu.PacsAborted, match="'STRANGER'"):
        scu.find(stranger, "study")
    archive = Archive(tmp_path / "archive")
    with pytest.raises(scu.PacsAborted, match="C-GET"):
        scu.retrieve(stranger, pacs.study_a, method="get", archive=archive)
    assert archive.instance_count() == 0


def test_closed_port_gives_connection_error(pacs: Pacs) -> None:
    closed = PacsNode("closed", "ANY", pacs.orthanc.host, pacs.network.allocate_port(), timeout_s=5)
    with pytest.raises(scu.PacsConnectionError, match="cannot connect"):
        scu.echo(closed)


def test_silent_peer_gives_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never answers
        node = PacsNode("silent", "SILENT", "127.0.0.1", silent.getsockname()[1], timeout_s=1)
        with pytest.raises(scu.PacsTimeout, match="within 1 s"):
            scu.echo(node)


# ---------------------------------------------------------------------------------------------
# C-FIND
# ---------------------------------------------------------------------------------------------


def test_find_patient_level_by_name_wildcard(pacs: Pacs) -> None:
    matches = scu.find(pacs.node, "patient", patient_name="DOE*")
    assert [(m["PatientID"], m["PatientName"]) for m in matches] == [("PA-1", "DOE^JANE")]
    assert matches[0]["NumberOfPatientRelatedStudies"] == 1


def test_find_study_level_by_date_range_accession_and_modality(pacs: Pacs) -> None:
    in_january = scu.find(pacs.node, "study", date_from="2024-01-01", date_to="2024-01-31")
    assert [m["StudyInstanceUID"] for m in in_january] == [pacs.study_a]
    study = in_january[0]
    assert study["AccessionNumber"] == "ACC-A"
    assert study["StudyDate"] == "20240115"
    assert study["ModalitiesInStudy"] == ["CT"]
    assert study["NumberOfStudyRelatedSeries"] == 2
    assert study["NumberOfStudyRelatedInstances"] == 20
    assert [m["PatientName"] for m in scu.find(pacs.node, "study", accession="ACC-B")] == ["SMITH^JOHN"]
    assert [m["StudyInstanceUID"] for m in scu.find(pacs.node, "study", modality="DX")] == [pacs.study_b]
    assert scu.find(pacs.node, "study", patient_id="NOBODY") == []


def test_find_series_level_lists_both_series_with_counts(pacs: Pacs) -> None:
    matches = sorted(scu.find(pacs.node, "series", study_uid=pacs.study_a), key=lambda m: m["SeriesNumber"])
    assert [
        (m["SeriesNumber"], m["SeriesInstanceUID"], m["NumberOfSeriesRelatedInstances"], m["Modality"])
        for m in matches
    ] == [(1, pacs.series_a1, 16, "CT"), (2, pacs.series_a2, 4, "CT")]
    assert matches[1]["SeriesDescription"] == "Scout"


def test_find_image_level_returns_every_instance(pacs: Pacs) -> None:
    matches = scu.find(pacs.node, "image", study_uid=pacs.study_a, series_uid=pacs.series_a1)
    assert {m["SOPInstanceUID"] for m in matches} == pacs.sops_a1
    assert sorted(m["InstanceNumber"] for m in matches) == list(range(1, 17))


# ---------------------------------------------------------------------------------------------
# C-STORE
# ---------------------------------------------------------------------------------------------


def test_send_ct_series_arrives_intact(pacs: Pacs, tmp_path: Path) -> None:
    files = _small_ct(tmp_path, "send", 16, 64, patient={"name": "SEND^TEST", "id": "PS-1"})
    series_uid = dcmread(files[0]).SeriesInstanceUID
    seen: list[tuple[int, int]] = []
    result = scu.send(pacs.node, [tmp_path / "send"], progress=lambda d, t: seen.append((d, t)))
    assert result.ok and result.sent == 16
    assert {s.status for s in result.statuses} == {0x0000}
    assert seen[-1] == (16, 16) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert pacs.orthanc.series_sop_uids(series_uid) == {p.stem for p in files}
    # one instance back through REST: same geometry and the same stored pixel values
    original = dcmread(files[7])
    [hit] = pacs.orthanc.find("Instance", {"SOPInstanceUID": original.SOPInstanceUID})
    echoed = dcmread(io.BytesIO(pacs.orthanc.instance_file(hit["ID"])))
    assert list(echoed.ImagePositionPatient) == list(original.ImagePositionPatient)
    assert (echoed.RescaleSlope, echoed.RescaleIntercept) == (
        original.RescaleSlope,
        original.RescaleIntercept,
    )
    assert np.array_equal(echoed.pixel_array, original.pixel_array)


def test_send_reports_unreadable_items_and_sends_the_rest(pacs: Pacs, tmp_path: Path) -> None:
    files = _small_ct(tmp_path, "mixed", 3, 16, patient={"name": "MIXED^TEST", "id": "PM-1"})
    junk = tmp_path / "mixed" / "notes.txt"
    junk.write_text("not DICOM")
    dataset = next(ct_series(SeriesGeometry(rows=16, columns=16, slices=1), patient={"id": "PM-1"}))
    result = scu.send(pacs.node, [tmp_path / "mixed", tmp_path / "missing.dcm", dataset])
    assert result.sent == 4
    failures = {Path(f.item).name: f for f in result.failed}
    assert set(failures) == {"notes.txt", "missing.dcm"}
    assert failures["notes.txt"].status is None and "not a readable DICOM" in failures["notes.txt"].message
    assert "not found" in failures["missing.dcm"].message
    assert not result.ok
    uids = {p.stem for p in files} | {str(dataset.SOPInstanceUID)}
    stored = {
        h["MainDicomTags"]["SOPInstanceUID"] for h in pacs.orthanc.find("Instance", {"PatientID": "PM-1"})
    }
    assert stored == uids


def test_send_to_a_peer_that_aborts_reports_every_item(pacs: Pacs, tmp_path: Path) -> None:
    files = _small_ct(tmp_path, "abort", 3, 16)
    with dcmtk_storescp(tmp_path, "ABORTER", network=pacs.network, extra_args=["--abort-after"]) as aborter:
        node = PacsNode("aborter", "ABORTER", aborter.host, aborter.port, timeout_s=10)
        result = scu.send(node, files)
    assert [(Path(s.item).name, s.status, s.message) for s in result.statuses] == [
        (files[0].name, None, "no reply: association aborted"),
        (files[1].name, None, "association lost before it was sent"),
        (files[2].name, None, "association lost before it was sent"),
    ]
    assert result.sent == 0 and not result.ok


# ---------------------------------------------------------------------------------------------
# C-GET / C-MOVE
# ---------------------------------------------------------------------------------------------


def test_get_study_into_archive_with_progress(pacs: Pacs, tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    seen: list[tuple[int, int]] = []
    result = scu.retrieve(
        pacs.node, pacs.study_a, method="get", archive=archive, progress=lambda d, t: seen.append((d, t))
    )
    assert result.ok and result.status == 0x0000
    assert (result.completed, result.failed, len(result.stored)) == (20, 0, 20)
    assert set(result.stored) == pacs.sops_a1 | pacs.sops_a2
    records = archive.instances(pacs.series_a1)
    assert {r.sop_instance_uid for r in records} == pacs.sops_a1
    assert {r.sop_instance_uid for r in archive.instances(pacs.series_a2)} == pacs.sops_a2
    one = records[0]
    stored = dcmread(one.path)
    assert np.array_equal(stored.pixel_array, dcmread(pacs.files_a1[one.sop_instance_uid]).pixel_array)
    meta = stored.file_meta  # written by our own File Meta encoder
    assert (meta.MediaStorageSOPInstanceUID, meta.MediaStorageSOPClassUID) == (
        one.sop_instance_uid,
        stored.SOPClassUID,
    )
    assert (
        meta.TransferSyntaxUID == ExplicitVRLittleEndian
        and meta.SourceApplicationEntityTitle == pacs.orthanc.aet
    )
    assert seen[-1] == (20, 20)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 10
    assert all(t == 20 for _, t in seen)


def test_get_acknowledges_without_fsync_and_is_durable_on_return(
    pacs: Pacs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-GET answers each sub-operation without waiting on the disk; fsyncs run in the archive's
    batches (one directory fsync per batch, not per object) and all are done when retrieve returns."""
    archive = Archive(tmp_path / "archive")
    real_fsync = os.fsync
    synced: list[tuple[int, bool, str]] = []  # (inode, is a directory, thread name)

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        real_fsync(fd)
        synced.append((st.st_ino, stat.S_ISDIR(st.st_mode), threading.current_thread().name))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    result = scu.retrieve(pacs.node, pacs.study_big, method="get", archive=archive)
    done = list(synced)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert result.ok and len(result.stored) == pacs.big_count
    files = list(archive.studies_dir.rglob("*.dcm"))
    assert len(files) == pacs.big_count
    assert {f.stat().st_ino for f in files} <= {ino for ino, is_dir, _ in done if not is_dir}
    assert {thread for _, _, thread in done} == {"archive-index"}  # never on the association's thread
    assert sum(is_dir for _, is_dir, _ in done) < pacs.big_count // 4
    assert archive._pending == [] and archive.instance_count() == pacs.big_count


def test_get_reports_objects_the_archive_could_not_yet_make_durable(
    pacs: Pacs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = Archive(tmp_path / "archive")

    def disk_full(*_: object, **__: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(archive, "_commit_rows", disk_full)
    monkeypatch.setattr("dicom_net.archive._FLUSH_WAIT_S", 0.3)
    result = scu.retrieve(pacs.node, pacs.study_a, pacs.series_a2, method="get", archive=archive)
    assert len(result.stored) == 4 and result.not_yet_durable and not result.ok
    monkeypatch.undo()  # the disk has room again: the archive's retry indexes them
    assert archive.flush() and {r.sop_instance_uid for r in archive.instances(pacs.series_a2)} == pacs.sops_a2
    archive.close()


def test_get_one_series_only(pacs: Pacs, tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    result = scu.retrieve(pacs.node, pacs.study_a, pacs.series_a2, method="get", archive=archive)
    assert set(result.stored) == pacs.sops_a2
    assert archive.instance_count() == 4


def test_get_without_archive_stores_into_the_default_archive(pacs: Pacs) -> None:
    result = scu.retrieve(pacs.node, pacs.study_a, pacs.series_a2, method="get")
    assert result.ok
    with Archive(default_archive_dir()) as archive:
        assert {r.sop_instance_uid for r in archive.instances(pacs.series_a2)} == pacs.sops_a2


def test_move_study_to_storescp(pacs: Pacs) -> None:
    before = set(pacs.storescp.files())
    seen: list[tuple[int, int]] = []
    result = scu.retrieve(
        pacs.node,
        pacs.study_a,
        pacs.series_a1,
        method="move",
        move_destination=MOVE_SCP_AET,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert result.ok and (result.completed, result.failed) == (16, 0)
    arrived = {
        dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in set(pacs.storescp.files()) - before
    }
    assert arrived == pacs.sops_a1
    assert seen[-1] == (16, 16) and len(seen) >= 8


def test_move_to_our_listener(pacs: Pacs, tmp_path: Path) -> None:
    from dicom_net.listener import ListenerConfig, start_listener

    config = ListenerConfig(
        aet=LISTENER_AET, port=0, archive_dir=tmp_path / "received", host=pacs.network.host_ip
    )
    with start_listener(config, write_status=False) as listener:
        pacs.orthanc.add_modality("listener", LISTENER_AET, pacs.network.host_ip, listener.port)
        result = scu.retrieve(pacs.node, pacs.study_a, method="move", move_destination=LISTENER_AET)
        assert result.ok and result.completed == 20
        assert {r.sop_instance_uid for r in listener.archive.instances(pacs.series_a1)} == pacs.sops_a1
        assert listener.archive.instance_count() == 20


def test_move_to_unknown_destination_fails_clearly(pacs: Pacs) -> None:
    with pytest.raises(scu.PacsOperationFailed, match="C-MOVE"):
        scu.retrieve(pacs.node, pacs.study_a, method="move", move_destination="NOWHERE")


@pytest.mark.parametrize("method", ["get", "move"])
def test_cancel_mid_retrieve_keeps_what_arrived(pacs: Pacs, tmp_path: Path, method: str) -> None:
    archive = Archive(tmp_path / "archive")
    cancel = threading.Event()
    before = set(pacs.storescp.files())

    def progress(done: int, total: int) -> None:
        if done >= 10:
            cancel.set()

    result = scu.retrieve(
        pacs.node,
        pacs.study_big,
        method=method,
        archive=archive,
        move_destination=MOVE_SCP_AET,
        progress=progress,
        cancel=cancel,
    )
    assert result.cancelled and not result.ok
    assert result.status == 0xFE00  # Orthanc honours C-CANCEL
    assert 10 <= result.completed < pacs.big_count
    if method == "get":
        assert 10 <= len(result.stored) < pacs.big_count
        assert archive.instance_count() == len(result.stored)  # everything received was kept
    else:
        assert 10 <= len(set(pacs.storescp.files()) - before) < pacs.big_count
