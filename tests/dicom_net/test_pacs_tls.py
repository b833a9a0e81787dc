"""DICOM TLS to a real Orthanc that requires mutual certificates."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_net import scu
from dicom_net.pacs_nodes import PacsNode, TlsSettings
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.peers import (
    OrthancServer,
    PeerUnavailable,
    TlsMaterial,
    make_tls_material,
    orthanc_server,
    private_network,
)

pytestmark = pytest.mark.network_peer

CALLING_AET = "HULUTLS"


@dataclass
class TlsPacs:
    orthanc: OrthancServer
    tls: TlsMaterial
    other_ca: TlsMaterial


@pytest.fixture(scope="module")
def tls_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPacs]:
    tmp = tmp_path_factory.mktemp("tls")
    with contextlib.ExitStack() as stack:
        try:
            net = stack.enter_context(private_network())
            tls = make_tls_material(tmp / "pki", [net.peer_ip])
            other = make_tls_material(tmp / "other-pki", [net.peer_ip])
            orthanc = stack.enter_context(
                orthanc_server(
                    tmp,
                    network=net,
                    modalities={"hulu": (CALLING_AET, None, 1)},
                    tls={"cert": str(tls.server_cert), "key": str(tls.server_key), "ca": str(tls.ca_cert)},
                )
            )
        except PeerUnavailable as exc:
            pytest.skip(str(exc))
        yield TlsPacs(orthanc, tls, other)


def _node(pacs: TlsPacs, tls: TlsSettings | None) -> PacsNode:
    return PacsNode(
        "secure",
        pacs.orthanc.aet,
        pacs.orthanc.host,
        pacs.orthanc.dicom_port,
        calling_aet=CALLING_AET,
        tls=tls,
        timeout_s=5,
    )


def test_mutual_tls_echo_send_and_find(tls_pacs: TlsPacs, tmp_path: Path) -> None:
    m = tls_pacs.tls
    node = _node(tls_pacs, TlsSettings(ca=str(m.ca_cert), cert=str(m.client_cert), key=str(m.client_key)))
    assert scu.echo(node).ok
    files = write_datasets(
        ct_series(SeriesGeometry(rows=16, columns=16, slices=3), patient={"id": "TLS-1"}), tmp_path / "s"
    )
    assert scu.send(node, files).sent == 3
    [study] = scu.find(node, "study", patient_id="TLS-1")
    assert study["NumberOfStudyRelatedInstances"] == 3


def test_plain_connection_to_tls_port_fails(tls_pacs: TlsPacs) -> None:
    with pytest.raises(scu.PacsAborted, match="it may require TLS"):
        scu.echo(_node(tls_pacs, None))


def test_missing_or_untrusted_client_certificate_is_refused(tls_pacs: TlsPacs) -> None:
    with pytest.raises(scu.PacsAborted, match="client certificate"):
        scu.echo(_node(tls_pacs, TlsSettings(ca=str(tls_pacs.tls.ca_cert))))
    other = tls_pacs.other_ca
    with pytest.raises(scu.PacsAborted, match="client certificate"):
        scu.echo(
            _node(
                tls_pacs,
                TlsSettings(
                    ca=str(tls_pacs.tls.ca_cert), cert=str(other.client_cert), key=str(other.client_key)
                ),
            )
        )


def test_server_signed_by_another_ca_is_not_trusted(tls_pacs: TlsPacs) -> None:
    other = tls_pacs.other_ca
    node = _node(
        tls_pacs, TlsSettings(ca=str(other.ca_cert), cert=str(other.client_cert), key=str(other.client_key))
    )
    with pytest.raises(scu.PacsConnectionError, match="TLS"):
        scu.echo(node)
