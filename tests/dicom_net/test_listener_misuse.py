"""Network misuse of the listener: slow or silent clients, PDUs that never complete. Each is cut
off the way DCMTK's storescp does it (ARTIM timer) and never costs an allowed sender its place."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from dicom_net.listener import ListenerConfig, ListenerHandle, start_listener
from dicom_net.listener_status import read_status
from dicom_net.synthetic import write_datasets
from tests.conftest import free_port
from tests.dicom_net.conftest import LISTENER_AET
from tests.dicom_net.dicom_objects import small_ct
from tests.dicom_net.test_listener_dcmtk import REPO, echoscu, storescu
from tests.peers import PeerUnavailable, TlsMaterial, make_tls_material

pytestmark = pytest.mark.network_peer


def associate_rq(calling: str = "SLOWPEER") -> bytes:
    """A complete, valid A-ASSOCIATE-RQ PDU proposing Verification."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = LISTENER_AET
    context = build_context(Verification)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.7433.1"
    primitive.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def closed_within(
    sock: socket.socket, seconds: float, dribble: bytes = b"", every_s: float = 0.3
) -> float | None:
    """Send ``dribble`` one byte every ``every_s``; seconds until the listener closed, or None."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        if sent < len(dribble):
            try:
                sock.sendall(dribble[sent : sent + 1])
            except OSError:
                return time.monotonic() - start
            sent += 1
        sock.settimeout(every_s)
        try:
            if sock.recv(64) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[ListenerHandle]:
    """A listener with a 1.5 s ARTIM (acse) timer and a long network timeout."""
    config = ListenerConfig(
        aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", acse_timeout=1.5, network_timeout=30
    )
    with start_listener(config, write_status=False) as handle:
        yield handle


def test_an_association_request_dribbled_a_byte_at_a_time_is_closed_at_the_acse_timeout(
    impatient: ListenerHandle,
) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port)) as slow:
        took = closed_within(slow, 10.0, dribble=associate_rq())
    assert took is not None and 1.0 < took < 4.0  # storescp: 30 s by default; here 1.5 s
    assert echoscu(impatient.port).returncode == 0


def test_an_association_request_shorter_than_its_length_is_timed_out(impatient: ListenerHandle) -> None:
    rq = associate_rq()
    with socket.create_connection(("127.0.0.1", impatient.port)) as short:
        short.sendall(rq[: len(rq) // 2])  # the header announces the whole PDU
        took = closed_within(short, 10.0)
    assert took is not None and took < 4.0  # not the 30 s network timeout


def test_a_pdu_dribbled_inside_an_association_is_aborted_after_the_network_timeout(tmp_path: Path) -> None:
    config = ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", network_timeout=1.5)
    with start_listener(config, write_status=False) as handle:
        ae = AE(ae_title="SLOWPEER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", handle.port, ae_title=LISTENER_AET)
        assert assoc.is_established
        raw = assoc.dul.socket.socket
        raw.sendall(struct.pack(">BBI", 0x04, 0, 1000) + b"\0" * 10)  # announces 1000 bytes
        start = time.monotonic()
        while assoc.is_established and time.monotonic() - start < 10:
            try:
                raw.sendall(b"\0")  # ... and never gets there: one byte every 0.3 s
            except OSError:  # the listener has hung up; our side may not have seen its A-ABORT yet
                pass
            time.sleep(0.3)
        assert assoc.is_aborted and time.monotonic() - start < 5
        assert echoscu(handle.port).returncode == 0


def test_connections_that_never_associate_do_not_lock_out_an_allowed_sender(tmp_path: Path) -> None:
    config = ListenerConfig(
        aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", allow=["MODALITY"], max_associations=16
    )
    files = write_datasets(small_ct(2), tmp_path / "src")
    with start_listener(config, write_status=False) as handle:
        rq = associate_rq()
        squatters = [socket.create_connection(("127.0.0.1", handle.port)) for _ in range(16)]
        try:
            for sock in squatters:
                sock.sendall(rq[:7])  # a header and one byte, then nothing (within the 30 s ARTIM)
            time.sleep(0.3)
            result = storescu(handle.port, files, aet="MODALITY")
            assert result.returncode == 0, result.stdout + result.stderr
            assert handle.archive.instance_count() == 2
            assert closed_within(squatters[-1], 0.5) is None  # still waiting for its ARTIM timer
        finally:
            for sock in squatters:
                sock.close()


def test_pending_connections_over_the_bound_close_the_oldest(tmp_path: Path) -> None:
    config = ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", max_associations=2)
    with start_listener(config, write_status=False) as handle:
        bound = handle.server.max_pending
        assert bound == 8
        silent = [socket.create_connection(("127.0.0.1", handle.port)) for _ in range(bound + 1)]
        try:
            assert closed_within(silent[0], 3.0) is not None  # the oldest made room for the newest
            assert closed_within(silent[-1], 0.5) is None
            assert echoscu(handle.port).returncode == 0
        finally:
            for sock in silent:
                sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    try:
        return make_tls_material(tmp_path_factory.mktemp("pki"))
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


def _receive(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "receive", "--aet", LISTENER_AET, "--port", str(port)]
        + ["--archive", str(tmp_path / "arc"), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_tls_without_a_ca_needs_an_explicit_no_client_auth_choice(tmp_path: Path, pki: TlsMaterial) -> None:
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    proc = _receive(tmp_path, free_port(), *tls)
    try:
        assert proc.wait(30) == 2  # refused at start, never listening with any client let in
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "--tls-ca" in err and "--tls-no-client-auth" in err


def test_tls_with_no_client_auth_warns_at_start_and_in_the_status_file(
    tmp_path: Path, pki: TlsMaterial
) -> None:
    from dicom_net.sockets import client_tls_context

    port = free_port()
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    proc = _receive(tmp_path, port, *tls, "--tls-no-client-auth")
    try:
        deadline = time.monotonic() + 30
        while (read_status(tmp_path / "arc") or {}).get("state") != "running":
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        status = read_status(tmp_path / "arc")
        assert status["tls"] is True and status["tls_client_auth"] is False
        ae = AE(ae_title="ANYONE")
        ae.add_requested_context(Verification)
        no_certificate = client_tls_context(pki.ca_cert)
        assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET, tls_args=(no_certificate, None))
        assert assoc.is_established  # as announced: any client gets in
        assoc.release()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "WARNING: TLS without client authentication" in proc.stderr.read()


def test_allow_list_hosts_are_compared_as_addresses(caplog: pytest.LogCaptureFixture) -> None:
    from dicom_net.listener_allow import AllowList

    with caplog.at_level("WARNING", logger="dicom_net"):
        allow = AllowList(["CT1@localhost", "MR1@10.0.0.5", "US1@no-such-host.invalid"])
    assert any("no-such-host.invalid" in r.getMessage() for r in caplog.records)  # said at start
    assert allow.allows("CT1", "127.0.0.1") and allow.allows("CT1", "::ffff:127.0.0.1")  # dual-stack peer
    assert allow.allows("MR1", "::ffff:10.0.0.5") and not allow.allows("MR1", "10.0.0.50")
    assert not allow.allows("US1", "127.0.0.1") and not allow.allows("CT2", "127.0.0.1")
