"""Limits and the less common storage classes: SR, encapsulated PDF, MPEG-4 video; association
count and timeouts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG4HP41,
    BasicTextSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    VideoEndoscopicImageStorage,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_net.listener import ListenerConfig, ListenerHandle, start_listener
from dicom_net.synthetic import write_datasets
from tests.dicom_net.conftest import LISTENER_AET
from tests.dicom_net.dicom_objects import part10, small_ct
from tests.dicom_net.test_listener_dcmtk import storescu

pytestmark = pytest.mark.network_peer


def _base(sop_class: str, modality: str, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "OBJ^TEST", "OBJ1", modality
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    return ds


def structured_report() -> Dataset:
    ds = _base(BasicTextSRStorage, "SR")
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121070", "DCM", "Findings"
    ds.ConceptNameCodeSequence = [concept]
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", "No acute findings."
    item.ConceptNameCodeSequence = [concept]
    ds.ContentSequence = [item]
    return ds


def encapsulated_pdf() -> Dataset:
    ds = _base(EncapsulatedPDFStorage, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    return ds


def mpeg4_video() -> Dataset:
    ds = _base(VideoEndoscopicImageStorage, "ES", MPEG4HP41)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = 64, 64, 3, 25
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_PARTIAL_420", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 40.0
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + b"\x42" * 998])  # stand-in H.264 stream
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _ae(*contexts: tuple[str, str]) -> AE:
    ae = AE(ae_title="LIMITS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    return ae


def test_sr_pdf_and_video_objects_are_stored_as_sent(listener: ListenerHandle) -> None:
    objects = [structured_report(), encapsulated_pdf(), mpeg4_video()]
    ae = _ae(*[(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in objects])
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    try:
        assert [assoc.send_c_store(ds).Status for ds in objects] == [0, 0, 0]
    finally:
        assoc.release()
    archive = listener.archive
    for ds in objects:
        [series] = archive.series(ds.StudyInstanceUID)
        [inst] = archive.instances(series.series_uid)
        assert inst.sop_class_uid == ds.SOPClassUID and inst.transfer_syntax == ds.file_meta.TransferSyntaxUID
        stored = inst.path.read_bytes()
        assert stored.endswith(part10(ds)[-200:])  # the dataset's bytes arrived unchanged
    assert archive.instances(archive.series(objects[2].StudyInstanceUID)[0].series_uid)[0].frames == 25


def test_associations_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", max_associations=2)
    )
    try:
        ae = _ae()
        held = [ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET) for _ in range(2)]
        assert all(a.is_established for a in held)
        third = ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET)
        assert third.is_rejected
        for assoc in held:
            assoc.release()
        time.sleep(0.3)
        again = ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET)
        assert again.is_established and again.send_c_echo().Status == 0
        again.release()
    finally:
        handle.stop(grace_s=1.0)


def test_silent_connections_are_closed_after_the_timeout(tmp_path: Path) -> None:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", acse_timeout=1.0)
    )
    try:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as silent:
            start = time.monotonic()
            assert silent.recv(16) == b""  # the listener hangs up on a peer that never associates
            assert time.monotonic() - start < 5
        ae = _ae()
        assoc = ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET)
        assert assoc.is_established
        assoc.release()
    finally:
        handle.stop(grace_s=1.0)


def test_received_objects_reach_other_processes_index_within_the_batch_window(
    listener: ListenerHandle,
) -> None:
    from dicom_net.archive import Archive
    from tests.dicom_net.dicom_objects import small_ct

    ae = _ae((CTImageStorage, ExplicitVRLittleEndian))
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert [assoc.send_c_store(ds).Status for ds in small_ct(3)] == [0, 0, 0]  # far fewer than a full batch
    assoc.release()
    with Archive(listener.archive.root) as gui_view:  # the GUI's own connection: nothing to flush there
        deadline = time.monotonic() + 2.0
        while gui_view.instance_count() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gui_view.instance_count() == 3


def test_a_dataset_over_the_size_cap_aborts_its_association_with_a_logged_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = write_datasets(small_ct(2, rows=32), tmp_path / "small")  # ~2 KiB each
    big = write_datasets(small_ct(1, rows=256), tmp_path / "big")  # 128 KiB of pixels
    config = ListenerConfig(
        aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", max_dataset_bytes=64 * 1024
    )
    with caplog.at_level("WARNING", logger="dicom_net"), start_listener(config, write_status=False) as handle:
        result = storescu(handle.port, [small[0], big[0]])
        assert result.returncode != 0  # storescu reports the abort
        big_uid = big[0].stem
        assert any(
            big_uid in r.getMessage() and "exceeds the cap of 65536 bytes" in r.getMessage()
            for r in caplog.records
        )
        stored = {
            r.sop_instance_uid
            for s in handle.archive.studies()
            for se in handle.archive.series(s.study_uid)
            for r in handle.archive.instances(se.series_uid)
        }
        assert stored == {small[0].stem}  # the object before it was kept; nothing of the big one
        assert not list(handle.archive.root.rglob("*.part"))
        assert storescu(handle.port, [small[1]]).returncode == 0  # the listener goes on receiving
        assert handle.archive.instance_count() == 2
    with pytest.raises(ValueError):
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", max_dataset_bytes=0)
