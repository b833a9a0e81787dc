"""The report store's study index: a study's reports are found without reading other studies'
files; the index follows every save (also from concurrent writers) and is rebuilt when missing or
damaged; the report files always decide."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from app.reporting.audit import INDEX_NAME, AuditRecord, ReportStore
from app.reporting.report import Report, StudyInfo


def saved(store: ReportStore, study_uid: str, findings: str = "") -> Report:
    report = Report(StudyInfo(study_instance_uid=study_uid, patient_id="P1"))
    report.set_text("findings", findings)
    store.save(report, AuditRecord(report.report_id, study_uid))
    return report


@pytest.fixture
def store_with_reports(tmp_path):
    store = ReportStore(tmp_path / "reports")
    reports = {
        uid: [saved(store, uid, f"{uid} #{n}") for n in range(count)]
        for uid, count in (("1.2.1", 2), ("1.2.2", 1), ("1.2.3", 3))
    }
    return store, reports


def ids(reports: list[Report]) -> list[str]:
    return [r.report_id for r in reports]


def test_index_lists_each_studys_reports_and_follows_saves(store_with_reports):
    store, reports = store_with_reports
    index = json.loads((store.root / INDEX_NAME).read_text())["studies"]
    assert {uid: sorted(v) for uid, v in index.items()} == {uid: sorted(ids(r)) for uid, r in reports.items()}
    for uid, expected in reports.items():
        assert ids(store.reports_for_study(uid)) == ids(expected)  # oldest first
    assert store.reports_for_study("9.9.9") == []
    again = reports["1.2.2"][0]
    again.set_text("impression", "Changed.")
    store.save(again, AuditRecord(again.report_id, "1.2.2"))  # a re-save is not listed twice
    [reloaded] = store.reports_for_study("1.2.2")
    assert reloaded.text("impression") == "Changed."


def test_opening_a_study_does_not_read_other_studies_reports(store_with_reports, caplog):
    store, reports = store_with_reports
    (store.root / reports["1.2.3"][0].report_id / "report.json").write_text("{damaged")
    with caplog.at_level(logging.WARNING, logger="app.reporting.audit"):
        assert ids(store.reports_for_study("1.2.1")) == ids(reports["1.2.1"])
    assert caplog.records == []  # the damaged record of another study was never opened
    with caplog.at_level(logging.WARNING, logger="app.reporting.audit"):
        assert ids(store.reports_for_study("1.2.3")) == ids(reports["1.2.3"][1:])
    assert any("unreadable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "other version", "wrong layout"])
def test_missing_or_damaged_index_is_rebuilt_from_the_report_files(store_with_reports, damage):
    store, reports = store_with_reports
    path = store.root / INDEX_NAME
    good = path.read_text()
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(good[: len(good) // 2])
    elif damage == "other version":
        path.write_text(json.dumps({"version": 99, "studies": {}}))
    else:
        path.write_text(json.dumps({"version": 1, "studies": {"1.2.1": "not a list"}}))
    fresh = ReportStore(store.root)  # e.g. the next start of the application
    for uid, expected in reports.items():
        assert ids(fresh.reports_for_study(uid)) == ids(expected)
    rebuilt = json.loads(path.read_text())["studies"]
    assert {uid: sorted(v) for uid, v in rebuilt.items()} == {
        uid: sorted(ids(r)) for uid, r in reports.items()
    }
    later = saved(fresh, "1.2.2", "after the rebuild")
    assert ids(fresh.reports_for_study("1.2.2")) == ids(reports["1.2.2"]) + [later.report_id]


def test_listed_but_unwritten_or_stale_entries_are_skipped(store_with_reports):
    store, reports = store_with_reports
    path = store.root / INDEX_NAME
    data = json.loads(path.read_text())
    data["studies"]["1.2.1"].append("abc123")  # crash after the index update, before the report file
    data["studies"]["1.2.1"].append(reports["1.2.2"][0].report_id)  # listed under the wrong study
    path.write_text(json.dumps(data))
    assert ids(store.reports_for_study("1.2.1")) == ids(reports["1.2.1"])
    assert ids(store.reports_for_study("1.2.2")) == ids(reports["1.2.2"])


def test_concurrent_writers_lose_no_index_entry(tmp_path):
    root = tmp_path / "reports"
    made: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        store = ReportStore(root)  # each writer its own store object (as the editor and pre-drafter)
        for i in range(15):
            report = saved(store, f"1.3.{i % 3}")
            with lock:
                made.append(report.report_id)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index = json.loads((root / INDEX_NAME).read_text())["studies"]
    assert sorted(i for v in index.values() for i in v) == sorted(made) and len(made) == 45
    assert sum(len(ReportStore(root).reports_for_study(f"1.3.{k}")) for k in range(3)) == 45
