"""`hulu-workstation pacs ...` end to end against a real Orthanc (in-process command line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread

from app.cli.main import main
from dicom_net.archive import Archive
from dicom_net.pacs_nodes import PacsNodes
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.peers import OrthancServer, PrivateNetwork, orthanc_module, peer_network

__all__ = ["orthanc_module", "peer_network"]  # fixtures used below

pytestmark = pytest.mark.network_peer


@pytest.fixture
def node(orthanc_module: OrthancServer, peer_network: PrivateNetwork) -> str:
    """A node 'orthanc' configured through the command line (calling AE known to Orthanc)."""
    orthanc_module.add_modality("clitest", "CLITEST", peer_network.host_ip, 1)
    assert (
        main(
            [
                "pacs",
                "nodes",
                "add",
                "orthanc",
                "--aet",
                orthanc_module.aet,
                "--host",
                orthanc_module.host,
                "--port",
                str(orthanc_module.dicom_port),
                "--calling-aet",
                "CLITEST",
                "--method",
                "get",
                "--timeout",
                "10",
            ]
        )
        == 0
    )
    return "orthanc"


def test_nodes_add_list_remove(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["pacs", "nodes", "add", "ris-pacs", "--aet", "PACS", "--host", "10.1.2.3", "--port", "104"])
        == 0
    )
    assert "saved node ris-pacs: PACS@10.1.2.3:104" in capsys.readouterr().out
    assert main(["pacs", "nodes", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "name": "ris-pacs",
            "aet": "PACS",
            "host": "10.1.2.3",
            "port": 104,
            "calling_aet": "HULUWS",
            "retrieve_method": "move",
            "timeout_s": 30.0,
        }
    ]
    assert main(["pacs", "nodes", "add", "ris-pacs", "--aet", "X", "--host", "h", "--port", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["pacs", "nodes", "remove", "ris-pacs"]) == 0
    assert PacsNodes().load() == {}


def test_invalid_node_and_unknown_node_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["pacs", "nodes", "add", "x", "--aet", "WAY_TOO_LONG_AE_TITLE", "--host", "h", "--port", "1"])
        == 2
    )
    assert "longer than 16" in capsys.readouterr().err
    assert main(["pacs", "echo", "ghost"]) == 2
    assert "unknown PACS node 'ghost'" in capsys.readouterr().err
    assert PacsNodes().load() == {}


def test_echo_send_find_retrieve(node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_datasets(
        ct_series(
            SeriesGeometry(rows=32, columns=32, slices=6),
            patient={"name": "CLI^PATIENT", "id": "CLI-1", "accession": "CLI-ACC"},
        ),
        tmp_path / "series",
    )
    study_uid = dcmread(files[0]).StudyInstanceUID
    assert main(["pacs", "echo", node]) == 0
    assert "status 0x0000" in capsys.readouterr().out

    assert main(["pacs", "send", node, str(tmp_path / "series")]) == 0
    assert "6 of 6 sent" in capsys.readouterr().out

    assert main(["pacs", "find", node, "--level", "study", "--accession", "CLI-ACC", "--json"]) == 0
    [study] = json.loads(capsys.readouterr().out)
    assert (study["StudyInstanceUID"], study["PatientID"], study["NumberOfStudyRelatedInstances"]) == (
        study_uid,
        "CLI-1",
        6,
    )
    assert main(["pacs", "find", node, "--level", "series", "--study-uid", study_uid]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "SeriesNumber",
        "Modality",
        "NumberOfSeriesRelatedInstances",
        "SeriesDescription",
        "SeriesInstanceUID",
    ]
    assert table[1].split()[:3] == ["1", "CT", "6"]

    archive_dir = tmp_path / "archive"
    assert main(["pacs", "retrieve", node, "--study", study_uid, "--archive", str(archive_dir)]) == 0
    out = capsys.readouterr()
    assert "6 completed, 0 failed" in out.out and "retrieved 6/6" in out.err
    assert Archive(archive_dir).instance_count() == 6


def test_find_with_key_at_wrong_level_exits_2(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pacs", "find", node, "--level", "series", "--accession", "A"]) == 2
    assert "cannot be searched at series level" in capsys.readouterr().err
