"""The PACS dialog with a DICOM node and a DICOMweb node side by side (real Orthanc with the
orthanc-dicomweb plugin and basic auth): it says which kind each is, and QIDO-RS query plus
WADO-RS retrieve through it bring the study into the browser, where it opens."""

from __future__ import annotations

import pytest

from app.gui.pacs_dialog import PacsDialog
from app.gui.settings_dialog import PacsNodesPage
from dicom_net import scu
from dicom_net.pacs_nodes import DicomWebNode, PacsNode, PacsNodes
from tests.peers import OrthancServer, PeerUnavailable, orthanc_server

pytestmark = pytest.mark.network_peer

USER, PASSWORD = "reader", "pw-Dialog-1"


@pytest.fixture
def web(tmp_path) -> OrthancServer:
    try:
        with orthanc_server(tmp_path, dicomweb=True, users={USER: PASSWORD}) as server:
            yield server
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


def test_dialog_shows_both_kinds_and_retrieves_by_wado_rs(web, archive, demo_files, make_window, qtbot):
    web_node = DicomWebNode("web", web.dicomweb_url, user=USER, password=PASSWORD, timeout_s=20)
    assert scu.send(web_node, [p for p in demo_files if p.parent.name in ("dx", "us")]).sent == 2
    nodes = PacsNodes()
    nodes.add(web_node)
    nodes.add(PacsNode("dimse", web.aet, web.host, web.dicom_port, retrieve_method="get"))
    window = make_window(archive)
    dialog = PacsDialog(window.tasks, archive, "HULUWS", parent=window)
    qtbot.addWidget(dialog)
    dialog.retrieved.connect(window._retrieved)

    assert [dialog.node_box.itemText(i) for i in range(dialog.node_box.count())] == ["dimse", "web"]
    assert dialog.node_kind.text() == f"DICOM ORTHANC@{web.host}:{web.dicom_port}, retrieve by C-GET"
    dialog.node_box.setCurrentText("web")
    assert dialog.node_kind.text() == f"DICOMweb {web.dicomweb_url} (user {USER}), retrieve by WADO-RS"

    dialog.fields["patient_name"].setText("demo")
    dialog.query()
    qtbot.waitUntil(lambda: dialog.results.rowCount() == 1, timeout=20000)
    assert dialog.results.item(0, 1).text() == "DEMO0001"
    progress = []
    window.tasks._signals.progress.connect(lambda _id, done, total, _t: progress.append((done, total)))
    dialog.results.selectRow(0)
    with qtbot.waitSignal(dialog.retrieved, timeout=30000) as blocker:
        dialog.retrieve_selected()
    study_uid = blocker.args[0]
    assert "Retrieved: 2 images, 0 failed" in dialog.status.text()
    assert progress and progress[-1] == (2, 2)
    qtbot.waitUntil(lambda: [r.study_uid for r in window.browser_logic.rows] == [study_uid], timeout=5000)
    session = window.open_study(study_uid)
    assert {s.modality for s in session.series} == {"DX", "US"}


def test_settings_page_names_a_dicomweb_node_instead_of_failing(qtbot):
    nodes = PacsNodes()
    nodes.add(DicomWebNode("web", "https://pacs.example.org/dicom-web"))
    page = PacsNodesPage(nodes)
    qtbot.addWidget(page)
    page.list.setCurrentRow(0)
    page._show("web")
    assert "DICOMweb https://pacs.example.org/dicom-web" in page.status.text()
    assert all(not field.text() for field in page.fields.values())
