"""The outbox under RIS faults and crashes placed at exact points: never two finals, never a
sender stuck on a babbling RIS, bounded copies for a RIS that never ACKs, delivery with the app closed."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hl7
import pytest

from app.cli.main import main
from app.reporting.audit import AuditRecord, ReportStore
from app.reporting.export import queue_report_to_ris
from app.reporting.mllp import MllpEndpoint, NoAck, send_message
from app.reporting.outbox import Outbox, State, attention
from app.reporting.report import Report, StudyInfo
from app.reporting.users import UserStore
from app.services.delivery_service import running_service_pid
from tests.conftest import free_port
from tests.reporting.hl7_receivers import python_hl7_receiver

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def signer(monkeypatch):
    """The workstation user who signs, and the password on stdin for every in-process command."""
    UserStore().add("boster", "Øster^Ben", PASSWORD, licence="LIC-0042")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n" * 10))


# `report send` in a child process that dies (os._exit) the first time the named function runs.
KILLED_SEND = textwrap.dedent("""
    import os, sys
    import app.reporting.audit, app.reporting.outbox
    target = {"save": (app.reporting.audit.ReportStore, "save"),
              "enqueue": (app.reporting.outbox.Outbox, "enqueue")}[sys.argv[1]]
    setattr(*target, lambda *a, **k: os._exit(9))
    from app.cli.main import main
    main(sys.argv[2:])
""")


def send_args(study_uid: str, text_file: Path, ris: str) -> list[str]:
    return [
        "report", "send", "--study", study_uid, "--text-file", str(text_file),
        "--status", "F", "--user", "boster", "--password-stdin", "--ris", ris,
    ]  # fmt: skip


def killed_send(point: str, args: list[str]) -> None:
    child = subprocess.run(
        [sys.executable, "-c", KILLED_SEND, point, *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 9, child.stderr


@pytest.mark.parametrize("point", ["save", "enqueue"])
@pytest.mark.parametrize("recover", ["send again", "outbox --process"])
def test_a_kill_while_signing_never_gives_the_ris_two_finals(archived_study, tmp_path, point, recover):
    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Findings: Normal chest.", encoding="utf-8")
    with python_hl7_receiver("AA") as ris:
        killed_send(point, send_args(study_uid, text_file, ris.address))
        assert ris.messages == []  # it died before anything left
        if recover == "send again":
            assert main(send_args(study_uid, text_file, ris.address)) == 0
        else:
            assert main(["report", "outbox", "--process"]) == 0
            main(send_args(study_uid, text_file, ris.address))  # the radiologist sends it again anyway
        main(["report", "outbox", "--process"])
    reports = ReportStore().reports_for_study(study_uid)
    assert [str(hl7.parse(m).segment("OBR")[25]) for m in ris.messages] == ["F"]
    assert len(reports) == 1 and len(reports[0].signatures) == 1


@contextmanager
def babbling_ris(
    payload: bytes, *, piece: int, every: float, limit_s: float = 20.0
) -> Iterator[tuple[str, threading.Event]]:
    """A peer that reads the message, then writes ``payload`` ``piece`` bytes at a time, ``every``
    seconds, and never ends the ACK (it gives up after ``limit_s``)."""
    server = socket.create_server(("127.0.0.1", 0))
    connected, stop = threading.Event(), threading.Event()

    def serve() -> None:
        server.settimeout(limit_s)
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            connected.set()
            deadline = time.monotonic() + limit_s
            for start in range(0, len(payload), piece):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    conn.sendall(payload[start : start + piece])
                except OSError:
                    return
                stop.wait(every)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", connected
    finally:
        stop.set()
        server.close()
        thread.join(limit_s + 5)


def test_a_dribbling_ris_is_cut_off_at_the_ack_deadline():
    dribble = b"\x0bMSH|^~\\&|RIS" + b"x" * 400
    started = time.monotonic()
    with babbling_ris(dribble, piece=1, every=0.2) as (address, _):
        # one piece every 0.2 s: a per-read timeout never fires, only an overall deadline does
        with pytest.raises(NoAck, match="no complete ACK within 1 s"):
            send_message(MllpEndpoint.parse(address), b"MSH|^~\\&|X\rPID|1", timeout=1.0)
    assert time.monotonic() - started < 15


def test_a_babbling_ris_is_cut_off_by_size():
    with babbling_ris(b"\x0b" + b"y" * (3 << 20), piece=64 * 1024, every=0.0) as (address, _):
        with pytest.raises(NoAck, match="passed 1048576 bytes without an MLLP end block"):
            send_message(MllpEndpoint.parse(address), b"MSH|^~\\&|X\rPID|1", timeout=20.0)


def final_report(uid: str = "1.2.3.4.5") -> Report:
    report = Report(
        StudyInfo(study_instance_uid=uid, accession_number="ACC9", patient_id="P9", modality="CT")
    )
    report.set_text("findings", "Normal chest.")
    report.sign("final", "Dr A")
    return report


def queue_final(outbox: Outbox, address: str, uid: str = "1.2.3.4.5") -> str:
    report = final_report(uid)
    return queue_report_to_ris(report, AuditRecord(report.report_id, uid), outbox, address).message_id


def test_no_lock_is_held_while_a_ris_keeps_us_waiting(tmp_path):
    outbox = Outbox(tmp_path / "outbox", base_delay=0.0, ack_timeout=4.0)
    with babbling_ris(b"\x0bMSH|" + b"z" * 40, piece=1, every=0.5) as (slow, connected):
        stuck_id = queue_final(outbox, slow, "1.2.3.1")
        stuck = threading.Thread(target=outbox.deliver_now, args=(stuck_id,))
        stuck.start()
        assert connected.wait(10)
        with python_hl7_receiver("AA") as ris:
            other = Outbox(tmp_path / "outbox", base_delay=0.0)  # another process's view
            fine_id = queue_final(other, ris.address, "1.2.3.2")
            assert other.deliver_now(fine_id).state is State.DELIVERED
            assert stuck.is_alive()  # delivered while the first send still waits for its ACK
            assert other.deliver_now(stuck_id).state is State.SENDING  # left to its live sender
        stuck.join(20)
    assert (
        outbox.get(stuck_id).state is State.PENDING
        and "no complete ACK within 4 s" in outbox.get(stuck_id).last_error
    )


def test_a_ris_that_never_acks_in_time_gets_a_bounded_number_of_copies(tmp_path):
    outbox = Outbox(tmp_path / "outbox", base_delay=0.0, max_delay=0.0, ack_timeout=0.5, max_unacknowledged=3)
    with python_hl7_receiver("hold") as ris:
        message_id = queue_final(outbox, ris.address)
        for _ in range(6):
            outbox.process_due(ignore_backoff=True)
        message = outbox.get(message_id)
    assert ris.control_ids() == [message_id] * 3
    assert message.state is State.FAILED and message.unacknowledged == 3
    advice = attention(message)
    assert "did not acknowledge 3 copies" in advice and f"report outbox --retry {message_id}" in advice


def test_an_unreachable_ris_is_retried_without_limit(tmp_path):
    outbox = Outbox(tmp_path / "outbox", base_delay=0.0, max_delay=0.0, max_unacknowledged=2)
    message_id = queue_final(outbox, f"127.0.0.1:{free_port()}")
    for _ in range(6):
        outbox.process_due(ignore_backoff=True)
    message = outbox.get(message_id)
    assert message.state is State.PENDING and message.attempts == 6 and message.unacknowledged == 0


def test_a_rejection_says_what_the_ris_answered_and_what_to_do(archived_study, tmp_path, capsys):
    study_uid, _ = archived_study
    text_file = tmp_path / "report.txt"
    text_file.write_text("Normal.", encoding="utf-8")
    with python_hl7_receiver("AR") as ris:
        assert main(send_args(study_uid, text_file, ris.address)) == 1
    out = capsys.readouterr().out
    assert "rejected the report (AR" in out and "Amend" in out


def test_the_delivery_service_delivers_with_the_app_closed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    port = free_port()
    message_id = queue_final(Outbox(), f"127.0.0.1:{port}")
    service = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "report", "outbox", "--serve", "--interval", "0.2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while running_service_pid() != service.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_service_pid() == service.pid
        second = subprocess.run(
            [sys.executable, "-m", "app.cli.main", "report", "outbox", "--serve"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 0 and "already running" in second.stdout
        with python_hl7_receiver("AA", port=port) as ris:  # the RIS comes up after the app closed
            deadline = time.monotonic() + 30
            while Outbox().get(message_id).state is not State.DELIVERED and time.monotonic() < deadline:
                time.sleep(0.1)
        assert Outbox().get(message_id).state is State.DELIVERED and ris.control_ids() == [message_id]
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
        service.stdout.close()
    assert running_service_pid() is None


def test_a_failed_message_a_later_signature_replaced_is_not_resent(tmp_path):
    """The RIS never gets an older signature after a newer one (a failed F retried after the correction)."""
    outbox = Outbox(tmp_path / "outbox", base_delay=0.0, max_delay=0.0, max_error_attempts=1)
    report = final_report()
    audit = AuditRecord(report.report_id, "1.2.3.4.5")
    with python_hl7_receiver("AE") as ris:
        first = queue_report_to_ris(report, audit, outbox, ris.address)
        outbox.process_due(ignore_backoff=True)
        assert outbox.get(first.message_id).state is State.FAILED
        report.open_amendment()
        report.set_text("findings", "Normal chest. Addendum.")
        report.sign("corrected", "Dr A")
        second = queue_report_to_ris(report, audit, outbox, ris.address)
        with pytest.raises(ValueError, match=f"message {second.message_id}"):
            outbox.retry(first.message_id)
    assert outbox.get(first.message_id).state is State.FAILED
