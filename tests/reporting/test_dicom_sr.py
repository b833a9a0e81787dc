"""The report as a Comprehensive SR (TID 2000): valid for DCMTK, stored by Orthanc, read back."""

from __future__ import annotations

import io
import subprocess

import pytest
from pydicom import dcmread

from app.reporting.audit import AuditRecord
from app.reporting.dicom_sr import SrError, build_report_sr
from app.reporting.export import queue_report_to_pacs
from app.reporting.outbox import Outbox, State
from app.reporting.report import KeyImage, Report, StudyInfo
from dicom_net.pacs_nodes import PacsNode, PacsNodes
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.peers import PeerUnavailable, orthanc_server

FINDINGS = "Nodule 6 mm | RUL ^ & ~ \\\nMüller, Æsir, 中文"
IMPRESSION = "Benign appearance."


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    try:
        with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
            yield server
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def study(tmp_path):
    datasets = list(
        ct_series(
            SeriesGeometry(rows=16, columns=16, slices=4),
            patient={"name": "Ærø^Zoë", "id": "PID-SR", "accession": "ACC-SR"},
        )
    )
    paths = write_datasets(datasets, tmp_path / "ct")
    return datasets, paths


def signed(datasets, paths, status="final") -> Report:
    report = Report(StudyInfo.from_dataset(datasets[0]))
    report.set_text("findings", FINDINGS)
    report.set_text("impression", IMPRESSION)
    for index in (1, 2):
        ds = datasets[index]
        report.key_images.append(
            KeyImage(ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID, path=str(paths[index]))
        )
    report.sign(status, "Øster, Ben")
    return report


def content_texts(sr) -> dict[str, str]:
    texts = {}
    for section in sr.ContentSequence:
        for item in getattr(section, "ContentSequence", []):
            if item.ValueType == "TEXT":
                texts[item.ConceptNameCodeSequence[0].CodeValue] = item.TextValue
    return texts


def referenced_images(sr) -> set[str]:
    refs = set()
    for section in sr.ContentSequence:
        for item in getattr(section, "ContentSequence", []):
            for child in getattr(item, "ContentSequence", []):
                if child.ValueType == "IMAGE":
                    refs.add(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return refs


def test_sr_refuses_drafts_and_foreign_evidence(study):
    datasets, paths = study
    report = Report(StudyInfo.from_dataset(datasets[0]))
    report.set_text("findings", "x")
    with pytest.raises(SrError, match="signed"):
        build_report_sr(report, datasets[:1])
    report.sign("final", "Dr A")
    other = list(ct_series(SeriesGeometry(rows=8, columns=8, slices=1)))
    with pytest.raises(SrError, match="another study"):
        build_report_sr(report, other)


def test_sr_passes_dsrdump_with_text_and_references(study, tmp_path):
    datasets, paths = study
    report = signed(datasets, paths)
    sr = build_report_sr(report, [dcmread(p, stop_before_pixels=True) for p in paths[1:3]])
    out = tmp_path / "sr.dcm"
    sr.save_as(out, enforce_file_format=True)
    dump = subprocess.run(["dsrdump", "-Ee", str(out)], capture_output=True, text=True, timeout=30)
    assert dump.returncode == 0, dump.stderr
    assert "Comprehensive SR Document" in dump.stdout and "Verification Flag   : VERIFIED" in dump.stdout
    assert '"Impression")="Benign appearance."' in dump.stdout
    assert dump.stdout.count('inferred from IMAGE:(,,"Best illustration of finding")') == 2
    assert "error" not in dump.stderr.lower()
    back = dcmread(out)
    assert back.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert back.SeriesInstanceUID != datasets[0].SeriesInstanceUID
    assert content_texts(back) == {"121071": FINDINGS, "121073": IMPRESSION}
    assert referenced_images(back) == {datasets[1].SOPInstanceUID, datasets[2].SOPInstanceUID}
    assert back.VerifyingObserverSequence[0].VerifyingObserverName == "Øster^Ben"


@pytest.mark.network_peer
def test_sr_is_stored_by_orthanc_and_read_back_and_the_correction_links_its_predecessor(orthanc, study):
    datasets, paths = study
    orthanc.upload(paths)
    PacsNodes().add(PacsNode(name="pacs", aet=orthanc.aet, host=orthanc.host, port=orthanc.dicom_port))
    outbox = Outbox(base_delay=0.0)
    report = signed(datasets, paths)
    audit = AuditRecord(report.report_id, report.study.study_instance_uid)
    message = queue_report_to_pacs(report, audit, outbox, "pacs", paths)
    assert [m.state for m in outbox.process_due()] == [State.DELIVERED], outbox.get(
        message.message_id
    ).last_error
    sr_uid = audit.events[-1]["sop_instance_uid"]
    hits = orthanc.find("Instance", {"SOPInstanceUID": sr_uid})
    assert len(hits) == 1
    stored = dcmread(io.BytesIO(orthanc.instance_file(hits[0]["ID"])))
    assert stored.StudyInstanceUID == datasets[0].StudyInstanceUID and stored.Modality == "SR"
    assert content_texts(stored) == {"121071": FINDINGS, "121073": IMPRESSION}
    assert referenced_images(stored) == {datasets[1].SOPInstanceUID, datasets[2].SOPInstanceUID}
    assert str(stored.PatientName) == "Ærø^Zoë"

    report.open_amendment()
    report.set_text("impression", "Benign appearance. Addendum: follow-up CT in 12 months.")
    report.sign("corrected", "Øster, Ben")
    queue_report_to_pacs(report, audit, outbox, "pacs", paths)
    assert [m.state for m in outbox.process_due()] == [State.DELIVERED]
    corrected_uid = audit.events[-1]["sop_instance_uid"]
    corrected = dcmread(
        io.BytesIO(
            orthanc.instance_file(orthanc.find("Instance", {"SOPInstanceUID": corrected_uid})[0]["ID"])
        )
    )
    predecessor = corrected.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sr_uid
    assert content_texts(corrected)["121073"].endswith("12 months.")


def test_pacs_failure_status_is_retried_bounded_and_a_pacs_that_is_down_stays_queued(study):
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from tests.conftest import free_port

    datasets, paths = study
    received = []

    def out_of_resources(event):
        received.append(event.dataset.SOPInstanceUID)
        return 0xA700

    ae = AE(ae_title="BUSYPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, out_of_resources)]
    )
    try:
        nodes = PacsNodes()
        nodes.add(PacsNode(name="busy", aet="BUSYPACS", host="127.0.0.1", port=server.server_address[1]))
        nodes.add(PacsNode(name="down", aet="DOWN", host="127.0.0.1", port=free_port(), timeout_s=5))
        outbox = Outbox(base_delay=0.0, max_error_attempts=2)
        report = signed(datasets, paths)
        audit = AuditRecord(report.report_id, report.study.study_instance_uid)
        busy = queue_report_to_pacs(report, audit, outbox, "busy", paths)
        down = queue_report_to_pacs(report, audit, outbox, "down", paths)
        for _ in range(3):
            outbox.process_due()
    finally:
        server.shutdown()
    busy, down = outbox.get(busy.message_id), outbox.get(down.message_id)
    assert busy.state is State.FAILED and busy.error_attempts == 2 and "0xA700" in busy.last_error
    assert len(received) == 2 and len(set(received)) == 1  # the same SR (same SOP Instance UID) each time
    assert down.state is State.PENDING and down.attempts == 3 and down.error_attempts == 0
