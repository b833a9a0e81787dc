"""The outbox never loses nor duplicates a signed report: receiver down, AE, AR, no ACK, crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.reporting.audit import AuditRecord
from app.reporting.export import AlreadyQueued, queue_report_to_ris
from app.reporting.outbox import Outbox, OutboxWorker, State
from app.reporting.report import Report, ReportError, StudyInfo
from tests.conftest import free_port
from tests.reporting.hl7_receivers import hl7apy_receiver, python_hl7_receiver

REPO = Path(__file__).resolve().parents[2]


def final_report() -> Report:
    report = Report(
        StudyInfo(study_instance_uid="1.2.3.4.5", accession_number="ACC9", patient_id="P9", modality="CT")
    )
    report.set_text("findings", "Normal chest.")
    report.sign("final", "Dr A")
    return report


def queue(tmp_path: Path, address: str, **outbox_args) -> tuple[Outbox, str]:
    outbox = Outbox(tmp_path / "outbox", base_delay=0.0, max_delay=0.0, **outbox_args)
    report = final_report()
    message = queue_report_to_ris(report, AuditRecord(report.report_id, "1.2.3.4.5"), outbox, address)
    return outbox, message.message_id


def test_draft_is_never_queued_and_a_signature_is_queued_once(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    draft = Report(StudyInfo(study_instance_uid="1.2.3", accession_number="A", patient_id="P"))
    draft.set_text("findings", "x")
    with pytest.raises(ReportError, match="draft"):
        queue_report_to_ris(draft, AuditRecord(draft.report_id, "1.2.3"), outbox, "127.0.0.1:2575")
    report = final_report()
    audit = AuditRecord(report.report_id, "1.2.3.4.5")
    queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    with pytest.raises(AlreadyQueued):
        queue_report_to_ris(report, audit, outbox, "127.0.0.1:2575")
    assert len(outbox.messages()) == 1 and audit.events[-1]["kind"] == "queued"


def test_ris_down_then_up_is_delivered_once(tmp_path):
    port = free_port()
    outbox, message_id = queue(tmp_path, f"127.0.0.1:{port}")
    first = outbox.process_due()
    assert [m.state for m in first] == [State.PENDING] and "Refused" in first[0].last_error
    with python_hl7_receiver("AA", port=port) as receiver:
        assert [m.state for m in outbox.process_due()] == [State.DELIVERED]
        assert outbox.process_due() == []
    assert receiver.control_ids() == [message_id]
    assert outbox.get(message_id).attempts == 2


def test_ae_is_retried_a_bounded_number_of_times_then_resent_by_hand(tmp_path):
    with hl7apy_receiver("AE") as receiver:
        outbox, message_id = queue(tmp_path, receiver.address, max_error_attempts=3)
        for _ in range(5):
            outbox.process_due()
        message = outbox.get(message_id)
        assert message.state is State.FAILED and message.error_attempts == 3
        assert receiver.control_ids() == [message_id] * 3
        receiver.mode = "AA"
        outbox.retry(message_id)
        outbox.process_due()
    assert outbox.get(message_id).state is State.DELIVERED
    assert receiver.control_ids() == [message_id] * 4


def test_ae_backoff_waits_before_the_next_try(tmp_path):
    with hl7apy_receiver("AE") as receiver:
        outbox = Outbox(tmp_path / "outbox", base_delay=60.0, max_delay=600.0)
        report = final_report()
        queue_report_to_ris(report, AuditRecord(report.report_id, "1"), outbox, receiver.address)
        now = time.time()
        outbox.process_due(now)
        assert outbox.process_due(now + 59) == []
        assert len(outbox.process_due(now + 61)) == 1
        message = outbox.messages()[0]
        assert message.next_attempt_at == pytest.approx(now + 61 + 120, abs=1)


def test_an_unreadable_record_does_not_block_the_others(tmp_path):
    with python_hl7_receiver("AA") as receiver:
        outbox, message_id = queue(tmp_path, receiver.address)
        (outbox.root / "0badrecord.json").write_text("{torn", encoding="utf-8")
        assert [m.state for m in outbox.process_due()] == [State.DELIVERED]
    assert receiver.control_ids() == [message_id]
    assert (outbox.root / "0badrecord.json").exists()


def test_ar_is_not_retried(tmp_path):
    with python_hl7_receiver("AR") as receiver:
        outbox, message_id = queue(tmp_path, receiver.address)
        outbox.process_due()
        outbox.process_due()
    assert outbox.get(message_id).state is State.REJECTED
    assert "AR" in outbox.get(message_id).last_error
    assert receiver.control_ids() == [message_id]


def test_no_ack_is_resent_with_the_same_control_id(tmp_path):
    with python_hl7_receiver("drop") as receiver:
        outbox, message_id = queue(tmp_path, receiver.address)
        assert outbox.process_due()[0].state is State.PENDING
        receiver.mode = "AA"
        assert outbox.process_due()[0].state is State.DELIVERED
    assert receiver.control_ids() == [message_id, message_id]
    assert receiver.messages[0] == receiver.messages[1]


SENDER = textwrap.dedent("""
    import sys
    from app.reporting.audit import AuditRecord
    from app.reporting.export import queue_report_to_ris
    from app.reporting.outbox import Outbox
    from app.reporting.report import Report, StudyInfo
    info = StudyInfo(study_instance_uid="1.2.3.4.5", accession_number="A", patient_id="P", modality="CT")
    report = Report(info)
    report.set_text("findings", "Normal.")
    report.sign("final", "Dr A")
    outbox = Outbox(base_delay=0.0)
    message = queue_report_to_ris(report, AuditRecord(report.report_id, "1.2.3.4.5"), outbox, sys.argv[1])
    print(message.message_id, flush=True)
    outbox.process_due()
    print("returned", flush=True)
""")


def test_crash_between_send_and_ack_is_delivered_after_restart(tmp_path):
    with python_hl7_receiver("hold") as receiver:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, receiver.address],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        try:
            message_id = sender.stdout.readline().strip()
            deadline = time.monotonic() + 60
            while not receiver.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.messages, "the sender never sent"
            os.kill(sender.pid, signal.SIGKILL)
        finally:
            sender.wait(10)
            sender.stdout.close()
        restarted = Outbox()  # same data dir (HULU_WORKSTATION_HOME), a new process's view
        assert restarted.get(message_id).state is State.SENDING
        receiver.mode = "AA"
        worker = OutboxWorker(restarted, interval=0.05)
        worker.start()
        try:
            deadline = time.monotonic() + 20
            while restarted.get(message_id).state is not State.DELIVERED and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
            worker.join(10)
    assert restarted.get(message_id).state is State.DELIVERED
    assert receiver.control_ids() == [message_id, message_id]
    assert len(set(receiver.control_ids())) == 1  # the receiver de-duplicates on MSH-10


def test_delivered_payloads_are_deleted_after_the_retention_period_undelivered_never(tmp_path):
    day = 86400.0
    with python_hl7_receiver("AA") as receiver:
        outbox, delivered_id = queue(tmp_path, receiver.address, retention_days=30)
        assert [m.state for m in outbox.process_due()] == [State.DELIVERED]
    down = final_report()
    pending_id = queue_report_to_ris(
        down, AuditRecord(down.report_id, "1.2.3.4.5"), outbox, f"127.0.0.1:{free_port()}"
    ).message_id
    delivered_at = outbox.get(delivered_id).delivered_at
    assert outbox.purge_delivered(now=delivered_at + 29 * day) == []
    assert outbox.payload_path(delivered_id).read_bytes().startswith(b"MSH|")
    outbox.process_due(now=delivered_at + 31 * day)  # the delivery loop applies retention
    assert not outbox.payload_path(delivered_id).exists()
    record = outbox.get(delivered_id)
    assert record.state is State.DELIVERED and record.payload_purged_at == delivered_at + 31 * day
    assert outbox.get(pending_id).state is State.PENDING
    assert outbox.payload_path(pending_id).read_bytes().startswith(b"MSH|")  # never delivered: kept
    assert outbox.purge_delivered(now=delivered_at + 400 * day) == []  # the pending one still kept
    assert outbox.payload_path(pending_id).exists()


def test_retention_shorter_than_a_day_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1 day"):
        Outbox(tmp_path / "outbox", retention_days=0)
