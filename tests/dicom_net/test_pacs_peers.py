"""The test harness itself (tests/peers.py): peers stay fenced in and leave nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.peers import PeerUnavailable, dcmtk_storescp, orthanc_server, private_network, run_echoscu

pytestmark = pytest.mark.network_peer


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout


def _netns_of(pid: int) -> str:
    return subprocess.run(
        ["ip", "netns", "identify", str(pid)], capture_output=True, text=True, check=False
    ).stdout.strip()


def test_orthanc_runs_inside_its_namespace_and_everything_is_removed_even_on_error(tmp_path: Path) -> None:
    try:
        with (
            pytest.raises(RuntimeError, match="test failure"),
            orthanc_server(
                tmp_path, modalities={"OURAE": (None, 104), "x": ("XAE", "127.0.0.1", 1)}
            ) as orthanc,
        ):
            name, host_if = orthanc.network.name, orthanc.network.host_if
            assert _netns_of(orthanc.process.pid) == name  # not in the machine's own network
            known = orthanc.rest("GET", "/modalities?expand")
            assert (known["OURAE"]["AET"], known["OURAE"]["Host"], known["OURAE"]["Port"]) == (
                "OURAE",
                orthanc.network.host_ip,
                104,
            )
            assert (known["x"]["AET"], known["x"]["Port"]) == ("XAE", 1)
            assert run_echoscu(orthanc.host, orthanc.dicom_port, orthanc.aet).returncode == 0
            assert orthanc.instance_count() == 0
            process = orthanc.process
            raise RuntimeError("test failure")
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    assert process.poll() is not None
    assert name not in _namespaces()
    assert host_if not in _links()


def test_storescp_shares_a_network_with_orthanc(tmp_path: Path) -> None:
    try:
        with (
            private_network() as net,
            orthanc_server(tmp_path, network=net) as orthanc,
            dcmtk_storescp(tmp_path, "SCP", network=net) as scp,
        ):
            assert {_netns_of(orthanc.process.pid), _netns_of(scp.process.pid)} == {net.name}
            assert scp.port not in (orthanc.dicom_port, orthanc.http_port)
            assert run_echoscu(scp.host, scp.port, "SCP").returncode == 0
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
