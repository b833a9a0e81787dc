"""Hanging of priors: the same patient's other studies (same Patient ID and issuer) are listed in
the reading view, newest first, and a prior's series dragged into a viewport shows beside today's
study, captioned as a prior and kept out of the AI context."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDropEvent

from app.reading.priors import find_priors
from app.reading.session import ReadingSession
from dicom_net.synthetic import SeriesGeometry, ct_series, radiograph, write_datasets


def store(archive, datasets, folder, issuer: str = "") -> str:
    for ds in datasets:
        if issuer:
            ds.IssuerOfPatientID = issuer
    for path in write_datasets(datasets, folder):
        archive.store_file(path)
    archive.flush()
    return datasets[0].StudyInstanceUID


def patient(pid: str, date: str, description: str) -> dict[str, str]:
    return {"id": pid, "name": "PRIOR^PAT", "study_date": date, "study_description": description}


@pytest.fixture
def studies(archive, tmp_path):
    small = SeriesGeometry(rows=32, columns=32, slices=6)
    uids = {
        "today": store(
            archive,
            list(ct_series(small, patient=patient("P1", "20250301", "CT chest"))),
            tmp_path / "a",
            "HOSP_A",
        ),
        "last_year": store(
            archive, [radiograph(patient=patient("P1", "20240110", "Chest PA"))], tmp_path / "b", "HOSP_A"
        ),
        "older": store(
            archive,
            list(ct_series(small, patient=patient("P1", "20230505", "CT chest old"))),
            tmp_path / "c",
            "HOSP_A",
        ),
        "other_issuer": store(
            archive, [radiograph(patient=patient("P1", "20240601", "Elsewhere"))], tmp_path / "d", "HOSP_B"
        ),
        "other_patient": store(
            archive, [radiograph(patient=patient("P10", "20240601", "Not ours"))], tmp_path / "e", "HOSP_A"
        ),
    }
    return uids


def test_priors_are_the_same_patient_id_and_issuer_newest_first(archive, studies):
    today = archive.study(studies["today"])
    assert [p.study_uid for p in find_priors(archive, today)] == [studies["last_year"], studies["older"]]
    # from a prior, today's study is a prior too; another issuer's "P1" has none of ours
    assert studies["today"] in [p.study_uid for p in find_priors(archive, archive.study(studies["older"]))]
    assert find_priors(archive, archive.study(studies["other_issuer"])) == []
    assert find_priors(archive, archive.study(studies["other_patient"])) == []


def test_session_accepts_a_priors_series_and_refuses_any_other_study(archive, studies):
    session = ReadingSession(archive, studies["today"])
    prior_series = archive.series(studies["last_year"])[0].series_uid
    foreign = archive.series(studies["other_issuer"])[0].series_uid
    session.assign(0, prior_series)
    assert session.slots[0].series_uid == prior_series and session.info(prior_series).modality == "DX"
    assert session.prior_of(prior_series).study_uid == studies["last_year"]
    assert session.prior_of(session.series[0].series_uid) is None
    with pytest.raises(KeyError, match="priors"):
        session.assign(0, foreign)
    assert session.load(prior_series).voxels.shape[0] == 1


def test_dragging_a_prior_series_shows_it_beside_todays_study(archive, studies, make_window, qtbot):
    from app.assistant.chat import screen_context_from
    from app.gui.study_browser import SERIES_MIME
    from app.reading.layouts import Layout

    window = make_window(archive)
    session = window.open_study(studies["today"])
    reading = window.reading
    assert reading.priors_label.text() == "Priors (2)" and reading.prior_box.isVisible()
    assert [reading.prior_box.itemText(i) for i in range(2)] == [
        "2024-01-10 DX Chest PA",
        "2023-05-05 CT CT chest old",
    ]
    reading.set_layout(Layout.ONE_BY_TWO)
    reading.prior_box.setCurrentIndex(1)
    older_ct = archive.series(studies["older"])[0].series_uid
    assert (
        reading.prior_strip.count() == 1
        and reading.prior_strip.item(0).data(Qt.ItemDataRole.UserRole + 1) == older_ct
    )
    mime = reading.prior_strip.mimeData([reading.prior_strip.item(0)])
    assert bytes(mime.data(SERIES_MIME)).decode() == older_ct
    target = reading.viewports[1]
    target.dropEvent(
        QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    )
    qtbot.waitUntil(lambda: all(vp.view is not None for vp in reading.viewports), timeout=30000)
    today_vp, prior_vp = reading.viewports
    assert today_vp.series_uid == session.series[0].series_uid and not today_vp.caption.isVisible()
    assert prior_vp.series_uid == older_ct and prior_vp.caption.isVisible()
    assert prior_vp.caption.text() == "PRIOR 2023-05-05 CT chest old"
    assert str(session.volumes[older_ct].metadata["series_uid"]) == older_ct
    reading.set_active(1)
    assert screen_context_from(window) is None  # the AI never gets the prior as today's images
    reading.set_active(0)
    assert screen_context_from(window).series_uid == session.series[0].series_uid


def test_a_patient_without_priors_shows_none(archive, studies, make_window):
    window = make_window(archive)
    window.open_study(studies["other_patient"])
    assert window.reading.priors_label.text() == "No priors" and not window.reading.prior_box.isVisible()
    assert window.reading.prior_strip.count() == 0


def test_deleting_a_prior_takes_it_off_the_list_and_out_of_the_viewports(
    archive, studies, make_window, qtbot
):
    window = make_window(archive)
    session = window.open_study(studies["today"])
    reading = window.reading
    prior_dx = archive.series(studies["last_year"])[0].series_uid
    reading.assign(0, prior_dx)
    qtbot.waitUntil(lambda: reading.viewports[0].series_uid == prior_dx, timeout=30000)
    window.delete_study(studies["last_year"], confirm=False)
    assert window.session is session and [p.study_uid for p in session.priors] == [studies["older"]]
    assert reading.priors_label.text() == "Priors (1)" and reading.prior_box.itemData(0) == studies["older"]
    assert session.slots[0].series_uid is None and reading.viewports[0].series_uid is None
    qtbot.waitUntil(lambda: not window.tasks.active, timeout=20000)
    assert archive.study(studies["last_year"]) is None
