"""PACS node configuration (file round trip, validation) and query building; no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicom_net.pacs_nodes import PacsNode, PacsNodeError, PacsNodes, TlsSettings, UnknownNodeError, nodes_file
from dicom_net.paths import config_dir
from dicom_net.scu_find import QueryError, build_identifier, date_range


def test_nodes_round_trip_through_the_config_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    store = PacsNodes()
    plain = PacsNode("main-pacs", "PACS1", "10.0.0.5", 104, calling_aet="WS1", retrieve_method="get")
    secure = PacsNode("secure", "PACS2", "pacs.example", 2762, tls=TlsSettings(ca=str(ca)), timeout_s=12.5)
    store.add(plain)
    store.add(secure)
    assert nodes_file() == config_dir() / "pacs_nodes.json"
    loaded = PacsNodes().load()
    assert loaded == {"main-pacs": plain, "secure": secure}
    assert loaded["secure"].tls is not None and loaded["secure"].tls.ca == str(ca)
    raw = json.loads(nodes_file().read_text())
    assert [n["name"] for n in raw["nodes"]] == ["main-pacs", "secure"]
    assert not [p for p in nodes_file().parent.iterdir() if p.name != "pacs_nodes.json"]  # no temp files left
    assert store.remove("main-pacs") == plain
    assert list(PacsNodes().load()) == ["secure"]


def test_adding_an_existing_name_needs_replace() -> None:
    store = PacsNodes()
    store.add(PacsNode("a", "AE1", "h", 104))
    with pytest.raises(PacsNodeError, match="already exists"):
        store.add(PacsNode("a", "AE2", "h", 104))
    store.add(PacsNode("a", "AE2", "h", 104), replace=True)
    assert store.get("a").aet == "AE2"


def test_unknown_node_names_the_known_ones() -> None:
    PacsNodes().add(PacsNode("alpha", "AE", "h", 104))
    with pytest.raises(UnknownNodeError, match=r"unknown PACS node 'beta' \(known: alpha\)"):
        PacsNodes().get("beta")
    with pytest.raises(UnknownNodeError):
        PacsNodes().remove("beta")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aet": ""}, "PACS AE title must not be empty"),
        ({"aet": "A" * 17}, "longer than 16"),
        ({"aet": "BAD\\AE"}, "without backslash"),
        ({"calling_aet": "tab\there"}, "calling AE title"),
        ({"port": 0}, "port 0 must be"),
        ({"port": 65536}, "port 65536 must be"),
        ({"port": "104"}, "port '104' must be"),
        ({"host": "two words"}, "host"),
        ({"retrieve_method": "ftp"}, "retrieve method 'ftp'"),
        ({"name": "has space"}, "node name"),
        ({"timeout_s": 0}, "timeout"),
    ],
)
def test_invalid_fields_are_refused_with_a_clear_message(fields: dict, message: str) -> None:
    values = {"name": "n", "aet": "AE", "host": "h", "port": 104, **fields}
    with pytest.raises(PacsNodeError, match=message):
        PacsNode(**values)


def test_ae_titles_are_trimmed() -> None:
    assert PacsNode("n", "  PACS  ", "h", 104, calling_aet="WS ").aet == "PACS"


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PacsNodeError, match="CA certificate file not found"):
        TlsSettings(ca=str(tmp_path / "missing.pem"))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(PacsNodeError, match="together"):
        TlsSettings(ca=str(ca), cert=str(ca))


def test_damaged_file_is_reported_not_overwritten() -> None:
    path = nodes_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    with pytest.raises(PacsNodeError, match="not valid JSON"):
        PacsNodes().load()
    with pytest.raises(PacsNodeError):
        PacsNodes().add(PacsNode("a", "AE", "h", 104))
    assert path.read_text() == "{ not json"
    path.write_text(
        json.dumps({"nodes": [{"name": "a", "aet": "AE", "host": "h", "port": 104, "colour": "red"}]})
    )
    with pytest.raises(PacsNodeError, match="unknown field.*colour"):
        PacsNodes().load()
    path.write_text(json.dumps({"nodes": [{"name": "a", "aet": "AE", "host": "h"}]}))
    with pytest.raises(PacsNodeError, match="lacks field.*port"):
        PacsNodes().load()


def test_identifiers_carry_keys_valid_at_each_level() -> None:
    ds = build_identifier(
        "study",
        {
            "patient_name": "DOE*",
            "date_from": "2024-01-01",
            "date_to": "20240131",
            "modality": "CT",
            "accession": None,
        },
    )
    assert ds.QueryRetrieveLevel == "STUDY"
    assert (str(ds.PatientName), ds.StudyDate, ds.ModalitiesInStudy) == ("DOE*", "20240101-20240131", "CT")
    assert ds.AccessionNumber == ""  # not searched, only asked for
    image = build_identifier("image", {"study_uid": "1.2", "series_uid": "1.2.3"})
    assert (image.QueryRetrieveLevel, image.StudyInstanceUID, image.SeriesInstanceUID) == (
        "IMAGE",
        "1.2",
        "1.2.3",
    )
    assert date_range("2024-02-03", None) == "20240203-"
    assert date_range(None, "2024-02-03") == "-20240203"
    assert date_range("2024-02-03", "2024-02-03") == "20240203"


@pytest.mark.parametrize(
    ("level", "keys", "message"),
    [
        ("series", {"accession": "A1", "study_uid": "1.2"}, "accession cannot be searched at series level"),
        ("series", {}, "needs study_uid"),
        ("image", {"study_uid": "1.2"}, "needs series_uid"),
        ("visit", {}, "query level 'visit'"),
        ("study", {"date_from": "31/01/2024"}, "must be a date"),
        ("study", {"date_from": "2024-02-01", "date_to": "2024-01-01"}, "is after"),
    ],
)
def test_bad_queries_are_refused_before_sending(level: str, keys: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        build_identifier(level, keys)
