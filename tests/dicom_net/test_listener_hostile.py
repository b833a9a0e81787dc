"""Hostile and broken input: each gets the right DICOM status, nothing enters the archive, and the
listener keeps answering afterwards."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE, _config
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import Verification

from dicom_net.listener import ListenerConfig, ListenerHandle, start_listener
from tests.dicom_net.conftest import LISTENER_AET, archive_is_empty
from tests.dicom_net.dicom_objects import part10, part10_as_is, small_ct
from tests.dicom_net.test_archive_crash import assert_index_points_only_at_complete_files, tiny_tmpfs

pytestmark = pytest.mark.network_peer


def associate(port: int, *contexts: str, **kw: object):
    ae = AE(ae_title="HOSTILE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for ctx in contexts or (CTImageStorage,):
        ae.add_requested_context(ctx, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET, **kw)
    assert assoc.is_established
    return assoc


def still_answers(port: int) -> bool:
    assoc = associate(port)
    try:
        return assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def send_file_as_is(port: int, path: Path, *contexts: str) -> int:
    """C-STORE a file's dataset bytes unchanged; the command's UIDs come from its file meta."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = associate(port, *contexts)
        try:
            return assoc.send_c_store(path).Status
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False


def test_dataset_uids_disagreeing_with_the_command_are_refused(
    listener: ListenerHandle, tmp_path: Path
) -> None:
    ds = small_ct(1)[0]
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # -> Affected SOP Instance UID differs
    (tmp_path / "instance.dcm").write_bytes(part10_as_is(ds))
    assert send_file_as_is(listener.port, tmp_path / "instance.dcm") == 0xA900

    ds = small_ct(1)[0]
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage  # -> command says MR, dataset is CT
    (tmp_path / "class.dcm").write_bytes(part10_as_is(ds))
    assert send_file_as_is(listener.port, tmp_path / "class.dcm", MRImageStorage) == 0xA900

    assert archive_is_empty(listener.archive.root)
    assert listener.stats.snapshot()["counts"]["failed"] == 2
    assert still_answers(listener.port)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "cut_in_header"])
def test_unparsable_or_truncated_datasets_are_refused(
    listener: ListenerHandle, tmp_path: Path, damage: str
) -> None:
    blob = part10(small_ct(1, rows=64)[0])
    (meta_length,) = struct.unpack("<I", blob[140:144])
    body = 144 + meta_length
    bad = {
        "truncated": blob[:-1000],
        "garbage": blob[:body] + bytes(range(256)) * 8,
        "cut_in_header": blob[: body + 90],
    }[damage]
    (tmp_path / "bad.dcm").write_bytes(bad)
    status = send_file_as_is(listener.port, tmp_path / "bad.dcm")
    assert status not in (0x0000, 0xB000, 0xB006, 0xB007) and status >= 0xA000, hex(status)
    assert archive_is_empty(listener.archive.root)
    assert still_answers(listener.port)


def test_pixel_data_length_disagreeing_with_image_attributes_is_refused(listener: ListenerHandle) -> None:
    short, odd_size = small_ct(1)[0], small_ct(1)[0]
    short.PixelData = bytes(short.PixelData)[:-64]
    odd_size.Columns = 33  # attributes promise more pixels than the data holds
    assoc = associate(listener.port)
    try:
        assert assoc.send_c_store(short).Status == 0xA900
        assert assoc.send_c_store(odd_size).Status == 0xA900
        good = small_ct(1)[0]
        assert assoc.send_c_store(good).Status == 0x0000  # same association goes on working
    finally:
        assoc.release()
    assert listener.archive.instance_count() == 1
    assert [
        i.sop_instance_uid
        for s in listener.archive.studies()
        for se in listener.archive.series(s.study_uid)
        for i in listener.archive.instances(se.series_uid)
    ] == [good.SOPInstanceUID]


def _store_pdus(ds, context_id: int, max_pdu: int) -> list[bytes]:
    blob = part10(ds)
    (meta_length,) = struct.unpack("<I", blob[140:144])
    req = C_STORE()
    req.MessageID = 7
    req.AffectedSOPClassUID = ds.SOPClassUID
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.Priority = 2
    req.DataSet = io.BytesIO(blob[144 + meta_length :])
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    pdus = []
    for primitive in msg.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    return pdus


def test_association_aborted_mid_transfer_leaves_no_partial_file(listener: ListenerHandle) -> None:
    ds = small_ct(1, rows=256)[0]
    assoc = associate(listener.port)
    context_id = assoc.accepted_contexts[0].context_id
    pdus = _store_pdus(ds, context_id, 16384)
    assert len(pdus) > 4
    raw = assoc.dul.socket.socket
    for pdu in pdus[: len(pdus) // 2]:  # half the dataset, then the sender dies
        raw.sendall(pdu)
    time.sleep(0.2)
    assoc.abort()
    time.sleep(0.3)
    assert archive_is_empty(listener.archive.root)
    assert not list(listener.archive.root.rglob("*.part"))
    assert still_answers(listener.port)


def test_connection_dropped_mid_transfer_leaves_no_partial_file(listener: ListenerHandle) -> None:
    ds = small_ct(1, rows=256)[0]
    assoc = associate(listener.port)
    pdus = _store_pdus(ds, assoc.accepted_contexts[0].context_id, 16384)
    raw = assoc.dul.socket.socket
    for pdu in pdus[:3]:
        raw.sendall(pdu)
    raw.sendall(pdus[3][: len(pdus[3]) // 2])  # even the PDU is cut short
    raw.shutdown(socket.SHUT_RDWR)
    assoc.kill()
    time.sleep(0.5)
    assert archive_is_empty(listener.archive.root)
    assert still_answers(listener.port)


def test_oversized_pdus_are_refused_before_being_buffered(listener: ListenerHandle) -> None:
    # before association: an A-ASSOCIATE-RQ claiming 512 MiB
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as s:
        s.sendall(struct.pack(">BBL", 0x01, 0, 512 * 1024 * 1024) + b"\0" * 1000)
        reply = s.recv(64)
        assert reply == b"" or reply[0] == 0x07  # closed, or A-ABORT
    # inside an association: a P-DATA-TF far over the negotiated maximum
    assoc = associate(listener.port)
    assoc.dul.socket.socket.sendall(struct.pack(">BBL", 0x04, 0, 256 * 1024 * 1024) + b"\0" * 4096)
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established
    assert still_answers(listener.port)


def test_full_disk_answers_out_of_resources_never_success(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "1m") as disk:
        handle = start_listener(
            ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=disk / "arc", min_free_bytes=0)
        )
        try:
            assoc = associate(handle.port)
            statuses = [assoc.send_c_store(ds).Status for ds in small_ct(80, rows=96)]
            assoc.release()
            stored = statuses.count(0x0000)
            assert 0 < stored < 80
            assert set(statuses) == {0x0000, 0xA700}
            assert statuses[:stored] == [0x0000] * stored  # once full, every later object is refused
            files = list(handle.archive.studies_dir.rglob("*.dcm"))
            assert len(files) == stored and not list(handle.archive.tmp_dir.iterdir())
            assert assert_index_points_only_at_complete_files(handle.archive) <= stored
            assert still_answers(handle.port)
            subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # the admin frees space
            assert handle.archive.reindex() == stored  # every acknowledged object is indexed
            assert assert_index_points_only_at_complete_files(handle.archive) == stored
        finally:
            handle.stop(grace_s=1.0)


def test_headroom_refuses_with_out_of_resources_before_the_disk_is_full(tmp_path: Path) -> None:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", min_free_bytes=1 << 62)
    )
    try:
        assoc = associate(handle.port)
        assert assoc.send_c_store(small_ct(1)[0]).Status == 0xA700
        assoc.release()
        assert archive_is_empty(handle.archive.root)
    finally:
        handle.stop(grace_s=1.0)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server and a client certificate signed by it, and a client signed by another CA."""
    folder = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    try:
        for ca in ("ca", "rogue_ca"):
            run(
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{ca}.key",
                "-out",
                f"{ca}.crt",
                "-days",
                "2",
                "-subj",
                f"/CN={ca}",
            )
        for name, ca in (("server", "ca"), ("client", "ca"), ("rogue", "rogue_ca")):
            run(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN={name}",
            )
            run(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                f"{ca}.crt",
                "-CAkey",
                f"{ca}.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "2",
            )
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make test certificates here: {exc}")
    return {p.stem + p.suffix.replace(".", "_"): p for p in folder.iterdir()}


def test_mutual_tls_accepts_only_clients_with_a_certificate_from_our_ca(tmp_path: Path, certificates) -> None:
    from dicom_net.sockets import client_tls_context

    c = certificates
    handle = start_listener(
        ListenerConfig(
            aet=LISTENER_AET,
            port=0,
            archive_dir=tmp_path / "arc",
            tls_cert=c["server_crt"],
            tls_key=c["server_key"],
            tls_ca=c["ca_crt"],
        )
    )
    try:
        good = client_tls_context(c["ca_crt"], c["client_crt"], c["client_key"])
        assoc = associate(handle.port, tls_args=(good, None))
        assert assoc.send_c_store(small_ct(1)[0]).Status == 0x0000
        assoc.release()
        assert handle.archive.instance_count() == 1

        for ctx in (
            client_tls_context(c["ca_crt"]),  # no client certificate
            client_tls_context(c["ca_crt"], c["rogue_crt"], c["rogue_key"]),
        ):  # wrong CA
            ae = AE(ae_title="HOSTILE")
            ae.acse_timeout = ae.network_timeout = 5
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET, tls_args=(ctx, None))
            assert not assoc.is_established
        plain = AE(ae_title="HOSTILE")
        plain.acse_timeout = plain.network_timeout = 5
        plain.add_requested_context(Verification)
        assert not plain.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET).is_established

        from tests.dicom_net.conftest import DCMTK_ENV, need_dcmtk

        need_dcmtk("echoscu")
        dcmtk = subprocess.run(
            [
                "echoscu",
                "-aec",
                LISTENER_AET,
                "+tls",
                str(c["client_key"]),
                str(c["client_crt"]),
                "+cf",
                str(c["ca_crt"]),
                "127.0.0.1",
                str(handle.port),
            ],
            env=DCMTK_ENV,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert dcmtk.returncode == 0, dcmtk.stderr
        assert handle.stats.snapshot()["counts"]["echoes"] == 1
    finally:
        handle.stop(grace_s=1.0)


def _raw_store_response(assoc, pdus: list[bytes]) -> int | None:
    """Send raw P-DATA-TF PDUs on an association; the C-STORE-RSP status that comes back."""
    from pynetdicom import evt

    statuses: list[int] = []
    assoc.bind(evt.EVT_DIMSE_RECV, lambda event: statuses.append(int(event.message.command_set.Status)))
    for pdu in pdus:
        assoc.dul.socket.socket.sendall(pdu)
    deadline = time.monotonic() + 5
    while not statuses and time.monotonic() < deadline:
        time.sleep(0.02)
    return statuses[0] if statuses else None


def test_store_on_a_context_for_another_sop_class_is_refused(listener: ListenerHandle) -> None:
    assoc = associate(listener.port, CTImageStorage, MRImageStorage)
    try:
        ds = small_ct(1)[0]
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage  # an "MR" object ...
        ct_context = next(
            c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage
        )
        assert (
            _raw_store_response(assoc, _store_pdus(ds, ct_context, 16384)) == 0x0122
        )  # ... on the CT context
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert archive_is_empty(listener.archive.root)


def test_data_on_a_context_that_was_never_accepted_aborts(listener: ListenerHandle) -> None:
    assoc = associate(listener.port)
    pdus = _store_pdus(small_ct(1)[0], 99, 16384)  # context 99 does not exist
    raw = assoc.dul.socket.socket  # pynetdicom drops its reference once the A-ABORT arrives
    try:
        raw.sendall(b"".join(pdus))
    except OSError:
        pass  # the listener may have closed the connection after the first PDU already
    deadline = time.monotonic() + 5
    while not assoc.is_aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted and not assoc.is_established
    assert archive_is_empty(listener.archive.root)
    assert still_answers(listener.port)


def test_pynetdicom_dimse_path_still_works_when_the_fast_data_phase_is_off(tmp_path: Path) -> None:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", fast_data_phase=False)
    )
    try:
        assoc = associate(handle.port)
        good, bad = small_ct(1)[0], small_ct(1)[0]
        bad.PixelData = bytes(bad.PixelData)[:-2]
        assert assoc.send_c_store(good).Status == 0x0000
        assert assoc.send_c_store(bad).Status == 0xA900
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert handle.archive.instance_count() == 1
        assert handle.stats.snapshot()["counts"]["echoes"] == 1
    finally:
        handle.stop(grace_s=1.0)
