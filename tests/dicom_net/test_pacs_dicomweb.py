"""DICOMweb nodes against a real Orthanc with Debian's orthanc-dicomweb plugin and basic auth on:
STOW-RS, QIDO-RS, WADO-RS into a fresh archive (through the API and the command line), errors
that name the HTTP status, TLS with a private CA, cancellation."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset

from app.cli.main import main
from dicom_net import scu
from dicom_net.archive import Archive
from dicom_net.dicomweb_http import DicomWebRefused
from dicom_net.pacs_nodes import DicomWebNode, PacsNodes
from dicom_net.scu_assoc import AssociationRejected, PacsConnectionError
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.conftest import free_port
from tests.dicom_net.dicom_objects import sample_file
from tests.peers import (
    OrthancServer,
    PeerUnavailable,
    PrivateNetwork,
    make_tls_material,
    orthanc_server,
    peer_network,
    tls_terminator,
)

__all__ = ["peer_network"]  # fixture used below

pytestmark = pytest.mark.network_peer

USER, PASSWORD = "radiology", "s3cret-Pa55"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, peer_network: PrivateNetwork) -> Iterator[OrthancServer]:
    """Orthanc with the DICOMweb plugin and HTTP basic authentication, one per module."""
    try:
        with orthanc_server(
            tmp_path_factory.mktemp("orthanc-web"),
            network=peer_network,
            dicomweb=True,
            users={USER: PASSWORD},
        ) as server:
            yield server
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def node(web: OrthancServer) -> DicomWebNode:
    web.clear()
    return DicomWebNode("web", web.dicomweb_url, user=USER, password=PASSWORD, timeout_s=20)


def _series(tmp_path: Path, slices: int = 6, accession: str = "WEB-ACC") -> list[Path]:
    datasets = ct_series(
        SeriesGeometry(rows=32, columns=32, slices=slices),
        patient={"name": "WEB^PATIENT", "id": "WEB-1", "accession": accession},
    )
    return write_datasets(datasets, tmp_path / f"series-{accession}")


def _pixels_by_uid(paths: list[Path]) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (transfer syntax, Pixel Data bytes as stored)."""
    out = {}
    for path in paths:
        ds = dcmread(path)
        out[str(ds.SOPInstanceUID)] = (str(ds.file_meta.TransferSyntaxUID), bytes(ds.PixelData))
    return out


def _archived_files(archive: Archive, study_uid: str) -> list[Path]:
    return [Path(i.path) for s in archive.series(study_uid) for i in archive.instances(s.series_uid)]


def test_stow_qido_wado_round_trip_into_a_fresh_archive(node: DicomWebNode, web, tmp_path: Path) -> None:
    files = _series(tmp_path)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    assert scu.echo(node).ok

    sent = scu.send(node, files)
    assert sent.ok and sent.sent == 6
    assert {s.status for s in sent.statuses} == {0x0000}
    series_uid = str(dcmread(files[0]).SeriesInstanceUID)
    assert web.series_sop_uids(series_uid) == {str(dcmread(f).SOPInstanceUID) for f in files}

    [study] = scu.find(node, "study", accession="WEB-ACC")
    assert (study["StudyInstanceUID"], study["PatientID"], study["PatientName"]) == (
        study_uid,
        "WEB-1",
        "WEB^PATIENT",
    )
    assert (study["NumberOfStudyRelatedInstances"], study["ModalitiesInStudy"]) == (6, ["CT"])
    assert scu.find(node, "study", accession="NO-SUCH") == []
    # wildcards travel as '*' and '?' (Orthanc's plugin does not decode %2A): a name search matches
    wild = scu.find(node, "study", patient_name="*web?pat*", date_from="2000-01-01")
    assert [m["StudyInstanceUID"] for m in wild] == [study_uid]
    [series] = scu.find(node, "series", study_uid=study_uid)
    assert (series["SeriesInstanceUID"], series["NumberOfSeriesRelatedInstances"]) == (series_uid, 6)
    images = scu.find(node, "image", study_uid=study_uid, series_uid=series_uid)
    assert sorted(i["InstanceNumber"] for i in images) == [1, 2, 3, 4, 5, 6]

    seen: list[tuple[int, int]] = []
    with Archive(tmp_path / "fresh") as archive:
        result = scu.retrieve(node, study_uid, archive=archive, progress=lambda d, t: seen.append((d, t)))
        assert result.ok and result.method == "wado-rs" and len(result.stored) == 6, result
        assert archive.instance_count() == 6
        retrieved = _archived_files(archive, study_uid)
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert _pixels_by_uid(retrieved) == _pixels_by_uid(files)


def test_series_retrieve_keeps_compressed_pixel_data_byte_for_byte(
    node: DicomWebNode, tmp_path: Path
) -> None:
    source = sample_file("MR_small_jpeg_ls_lossless.dcm")
    original = dcmread(source)
    assert scu.send(node, [source]).ok
    with Archive(tmp_path / "fresh") as archive:
        result = scu.retrieve(node, original.StudyInstanceUID, original.SeriesInstanceUID, archive=archive)
        assert result.ok and result.stored == [original.SOPInstanceUID]
        [stored] = _archived_files(archive, original.StudyInstanceUID)
    assert _pixels_by_uid([stored]) == _pixels_by_uid([source])
    assert str(dcmread(stored).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.80"  # JPEG-LS lossless


def test_datasets_in_memory_are_sent_as_part10_and_left_unchanged(node: DicomWebNode, web) -> None:
    datasets = list(ct_series(SeriesGeometry(rows=16, columns=16, slices=2)))
    datasets[0].file_meta = FileMetaDataset()  # only a transfer syntax: the rest is ours to add
    datasets[0].file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    del datasets[1].file_meta  # no File Meta at all: sent as explicit VR little endian
    before = [(ds.file_meta.to_json() if "file_meta" in dir(ds) else None) for ds in datasets]
    result = scu.send(node, datasets)
    assert result.ok and result.sent == 2
    assert web.series_sop_uids(datasets[0].SeriesInstanceUID) == {ds.SOPInstanceUID for ds in datasets}
    assert [(ds.file_meta.to_json() if "file_meta" in dir(ds) else None) for ds in datasets] == before


def test_cancel_keeps_what_arrived_and_stops(node: DicomWebNode, tmp_path: Path) -> None:
    files = _series(tmp_path, slices=5, accession="WEB-CANCEL")
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    assert scu.send(node, files).ok
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    with Archive(tmp_path / "fresh") as archive:
        result = scu.retrieve(node, study_uid, archive=archive, progress=progress, cancel=cancel)
        assert result.cancelled and not result.ok
        assert len(result.stored) == 2 and archive.instance_count() == 2
        assert not list(archive.tmp_dir.iterdir())


def test_wrong_password_names_401_and_credentials(web: OrthancServer, tmp_path: Path) -> None:
    bad = DicomWebNode("web", web.dicomweb_url, user=USER, password="wrong", timeout_s=10)
    for call in (
        lambda: scu.echo(bad),
        lambda: scu.find(bad, "study"),
        lambda: scu.send(bad, _series(tmp_path)),
    ):
        with pytest.raises(DicomWebRefused, match=r"HTTP 401 .*check the user and password") as info:
            call()
        assert info.value.http_status == 401
        assert isinstance(info.value, AssociationRejected)  # the outbox does not resend it forever
        assert "wrong" not in str(info.value)


def test_wrong_prefix_names_404_and_the_url(web: OrthancServer) -> None:
    node = DicomWebNode("web", f"{web.http_url}/dicomweb", user=USER, password=PASSWORD, timeout_s=10)
    with pytest.raises(DicomWebRefused, match=r"HTTP 404 .*check the URL and its path prefix"):
        scu.echo(node)


def test_nothing_listening_is_a_connection_error() -> None:
    node = DicomWebNode("web", f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=5)
    with pytest.raises(PacsConnectionError, match="cannot connect .*host and port"):
        scu.find(node, "study")


def test_https_with_the_nodes_ca_and_a_clear_error_with_another_ca(
    node: DicomWebNode, web: OrthancServer, tmp_path: Path
) -> None:
    right = make_tls_material(tmp_path / "right", server_ips=(web.host,))
    other = make_tls_material(tmp_path / "other", server_ips=(web.host,))
    try:
        with tls_terminator(tmp_path, web, right) as https:
            good = replace(node, url=f"{https}/dicom-web", tls_ca=str(right.ca_cert))
            assert scu.echo(good).ok
            assert scu.send(good, _series(tmp_path, slices=2)).sent == 2
            wrong = replace(good, tls_ca=str(other.ca_cert))
            with pytest.raises(
                PacsConnectionError, match=r"TLS failed \(certificate verify failed.*--tls-ca"
            ):
                scu.echo(wrong)
            system_cas = replace(good, tls_ca=None)
            with pytest.raises(PacsConnectionError, match=r"TLS failed \(certificate verify failed"):
                scu.echo(system_cas)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


def test_report_sr_reaches_a_dicomweb_node_through_the_outbox(
    node: DicomWebNode, web, tmp_path: Path
) -> None:
    from app.reporting.audit import AuditRecord
    from app.reporting.export import queue_report_to_pacs
    from app.reporting.outbox import Outbox, State
    from tests.reporting.test_dicom_sr import content_texts, signed

    datasets = list(ct_series(SeriesGeometry(rows=16, columns=16, slices=3)))
    paths = write_datasets(datasets, tmp_path / "ct")
    PacsNodes().add(node)
    outbox = Outbox(base_delay=0.0)
    report = signed(datasets, paths)
    audit = AuditRecord(report.report_id, report.study.study_instance_uid)
    message = queue_report_to_pacs(report, audit, outbox, node.name, paths)
    assert [m.state for m in outbox.process_due()] == [State.DELIVERED], outbox.get(
        message.message_id
    ).last_error
    sr_uid = audit.events[-1]["sop_instance_uid"]
    [hit] = web.find("Instance", {"SOPInstanceUID": sr_uid})
    stored = dcmread(io.BytesIO(web.instance_file(hit["ID"])))
    assert stored.Modality == "SR" and content_texts(stored)["121073"] == "Benign appearance."


def _cli(args: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HULU_WORKSTATION_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_command_line_round_trip_and_the_password_stays_secret(
    node: DicomWebNode, web: OrthancServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    files = _series(tmp_path, slices=4, accession="CLI-WEB")
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    add = _cli(
        ["pacs", "nodes", "add", "web", "--dicomweb", web.dicomweb_url, "--user", USER, "--password-stdin"],
        home,
        stdin=PASSWORD + "\n",
    )
    assert add.returncode == 0, add.stderr
    assert f"saved node web: DICOMweb {web.dicomweb_url} (user {USER})" in add.stdout
    config = home / "config"
    secrets = config / "pacs_secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text()) == {"web": PASSWORD}
    assert PASSWORD not in (config / "pacs_nodes.json").read_text()

    outputs = [add]
    echo = _cli(["pacs", "echo", "web"], home)
    assert echo.returncode == 0 and "QIDO-RS answered" in echo.stdout, echo.stderr
    send = _cli(["pacs", "send", "web", str(files[0].parent)], home)
    assert send.returncode == 0 and "STOW-RS to web: 4 of 4 sent" in send.stdout, send.stderr
    find = _cli(["pacs", "find", "web", "--accession", "CLI-WEB", "--json"], home)
    assert find.returncode == 0, find.stderr
    [study] = json.loads(find.stdout)
    assert (study["StudyInstanceUID"], study["NumberOfStudyRelatedInstances"]) == (study_uid, 4)
    archive_dir = tmp_path / "cli-archive"
    got = _cli(["pacs", "retrieve", "web", "--study", study_uid, "--archive", str(archive_dir)], home)
    assert got.returncode == 0, got.stderr
    assert "WADO-RS done: 4 completed, 0 failed" in got.stdout and "retrieved 4/4" in got.stderr
    listed = _cli(["pacs", "nodes", "list", "--json"], home)
    assert json.loads(listed.stdout) == [
        {"kind": "dicomweb", "name": "web", "url": web.dicomweb_url, "user": USER, "timeout_s": 30.0}
    ]
    outputs += [echo, send, find, got, listed]
    assert not any(PASSWORD in o.stdout + o.stderr for o in outputs)
    with Archive(archive_dir) as archive:
        assert _pixels_by_uid(_archived_files(archive, study_uid)) == _pixels_by_uid(files)

    (home / "config" / "pacs_secrets.json").write_text(json.dumps({"web": "wrong"}))
    os.chmod(secrets, 0o600)
    refused = _cli(["pacs", "find", "web"], home)
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr and "check the user and password" in refused.stderr


def test_dicomweb_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://pacs.example.org/dicom-web"
    assert main(["pacs", "nodes", "add", "w", "--dicomweb", url, "--user", "u"]) == 2
    assert "--user needs --password-stdin" in capsys.readouterr().err
    assert main(["pacs", "nodes", "add", "w", "--dicomweb", url, "--aet", "X"]) == 2
    assert "takes none of --aet" in capsys.readouterr().err
    assert main(["pacs", "nodes", "add", "w", "--user", "u", "--password-stdin"]) == 2
    assert "apply to a DICOMweb node" in capsys.readouterr().err
    assert main(["pacs", "nodes", "add", "w", "--dicomweb", "ftp://x/y"]) == 2
    assert "must be http(s)://" in capsys.readouterr().err
    assert main(["pacs", "nodes", "add", "w", "--dicomweb", url]) == 0
    assert main(["pacs", "retrieve", "w", "--study", "1.2.3", "--method", "get"]) == 2
    assert "retrieves by WADO-RS" in capsys.readouterr().err
    assert main(["pacs", "find", "w", "--level", "patient"]) == 2
    assert "no patient level" in capsys.readouterr().err
