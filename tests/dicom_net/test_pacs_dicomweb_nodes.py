"""DICOMweb nodes in the nodes file: validation, and the password kept apart in a 0600 file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from dicom_net.dicomweb_http import open_client
from dicom_net.pacs_nodes import DicomWebNode, PacsNode, PacsNodeError, PacsNodes

URL = "https://pacs.example.org/dicom-web"


def test_a_dicomweb_node_is_validated_when_made(tmp_path: Path) -> None:
    assert DicomWebNode("w", URL + "/").url == URL  # trailing slash dropped
    for url, match in (
        ("ftp://pacs/dicom-web", "must be http"),
        ("https:///dicom-web", "must be http"),
        ("https://pacs/dicom-web?x=1", "must be http"),
        ("https://user:pw@pacs/dicom-web", "never in the DICOMweb URL"),
    ):
        with pytest.raises(PacsNodeError, match=match):
            DicomWebNode("w", url)
    token = tmp_path / "token"
    token.write_text("abc\n")
    with pytest.raises(PacsNodeError, match="not both"):
        DicomWebNode("w", URL, user="u", token_file=str(token))
    with pytest.raises(PacsNodeError, match="token file not found"):
        DicomWebNode("w", URL, token_file=str(tmp_path / "absent"))
    with pytest.raises(PacsNodeError, match="needs an https"):
        DicomWebNode("w", "http://pacs/dicom-web", tls_ca=str(token))
    with pytest.raises(PacsNodeError, match="timeout"):
        DicomWebNode("w", URL, timeout_s=0)
    assert "secret" not in repr(DicomWebNode("w", URL, user="u", password="secret"))


def test_password_lives_in_a_0600_file_beside_the_nodes_and_goes_with_the_node(tmp_path: Path) -> None:
    nodes = PacsNodes(tmp_path / "pacs_nodes.json")
    nodes.add(DicomWebNode("web", URL, user="u", password="pw-1"))
    nodes.add(PacsNode("dimse", "PACS", "10.0.0.1", 104))
    assert "pw-1" not in nodes.path.read_text()
    secrets = tmp_path / "pacs_secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    loaded = nodes.load()
    assert loaded["web"].password == "pw-1" and isinstance(loaded["dimse"], PacsNode)
    assert json.loads(nodes.path.read_text())["nodes"][1] == {
        "kind": "dicomweb",
        "name": "web",
        "url": URL,
        "user": "u",
        "timeout_s": 30.0,
    }
    nodes.add(DicomWebNode("web", URL), replace=True)  # no user any more: its password goes
    assert json.loads(secrets.read_text()) == {}
    nodes.add(DicomWebNode("web", URL, user="u", password="pw-2"), replace=True)
    nodes.remove("web")
    assert json.loads(secrets.read_text()) == {} and list(nodes.load()) == ["dimse"]


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    nodes = PacsNodes(tmp_path / "pacs_nodes.json")
    nodes.add(DicomWebNode("web", URL, user="u", password="pw"))
    os.chmod(tmp_path / "pacs_secrets.json", 0o644)
    with pytest.raises(PacsNodeError, match="readable by others: run chmod 600"):
        nodes.load()


def test_a_user_without_a_stored_password_and_a_bad_token_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(PacsNodeError, match="no stored password"):
        open_client(DicomWebNode("web", URL, user="u"))
    token = tmp_path / "token"
    token.write_text("two words\n")
    with pytest.raises(PacsNodeError, match="one token on one line"):
        open_client(DicomWebNode("web", URL, token_file=str(token)))
    token.write_text("eyJhbGciOi.J9\n")
    client = open_client(DicomWebNode("web", URL, token_file=str(token)))
    assert client._session.headers["Authorization"] == "Bearer eyJhbGciOi.J9"
