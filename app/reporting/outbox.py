"""Persistent outbox for signed reports: HL7 messages to the RIS and SR objects to the PACS.

Guarantees: a message is on disk (payload, then its record, both atomic) before anything is sent;
its record says ``sending`` before the bytes leave, so after a crash it is sent again with the
SAME payload (same MSH-10 / SOP Instance UID) and the receiver de-duplicates. Outcomes:

- delivered (AA / C-STORE success): done, never sent again;
- AE or a DICOM failure status: retried with backoff, at most ``max_error_attempts`` times, then
  ``failed`` (visible; :meth:`Outbox.retry` re-queues it by hand);
- AR: ``rejected``, not retried;
- receiver down (no connection, nothing left this machine): retried with backoff (capped),
  without limit - never lost;
- sent but not acknowledged within the ACK timeout: resent with the same id, at most
  ``max_unacknowledged`` copies, then ``failed`` - a RIS that ACKs too late or not at all never
  receives an endless stream of copies.
:func:`attention` says, for a failed or rejected message, what happened and what to do.

Several processes share one outbox (the app, the CLI, the delivery service): a short file lock
guards only the records. A message is *claimed* under the lock (state ``sending`` with the
claiming process), sent with the lock released - no process ever holds it across a network wait -
and its outcome is recorded under the lock again. A ``sending`` message whose claimer has died is
sent again after a crash; one whose claimer is alive is left to it.

Retention: a delivered message's payload (the report text with the patient's identity) is deleted
``retention_days`` after delivery; its record stays as the delivery log. Payloads of messages
that are not delivered (pending, sending, failed, rejected) are never deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from app.reporting.atomic import read_json, write_bytes_atomic, write_json_atomic
from app.reporting.mllp import DEFAULT_ACK_TIMEOUT, MllpEndpoint, NoAck, NotSent, send_message
from dicom_net.paths import data_dir

log = logging.getLogger(__name__)
HISTORY_KEPT = 50  # attempts remembered per message (a RIS down for days retries thousands of times)
DEFAULT_RETENTION_DAYS = 30  # delivered payloads (PHI) are deleted this long after delivery
DAY_SECONDS = 86400.0


class State(str, Enum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"


class Outcome(str, Enum):
    DELIVERED = "delivered"
    UNREACHABLE = "unreachable"  # nothing left this machine: resend, unbounded
    UNKNOWN = "unknown"  # sent, no answer: resend, bounded copies
    ERROR = "error"  # receiver error: resend, bounded
    REJECTED = "rejected"  # do not resend


@dataclass
class Result:
    outcome: Outcome
    detail: str = ""


@dataclass
class OutboxMessage:
    message_id: str  # the MSH-10 for HL7, the SOP Instance UID's key for DICOM
    kind: str  # "hl7" or "dicom"
    destination: str  # "host:port" for HL7, a PACS node name for DICOM
    report_id: str
    study_instance_uid: str
    result_status: str  # P, F or C
    signature_count: int = 0  # which signature of the report this message carries
    state: State = State.PENDING
    attempts: int = 0
    error_attempts: int = 0
    unacknowledged: int = 0  # copies that left without an answer
    claimed_by: list[float] | None = None  # [pid, process start time] of the sender while ``sending``
    next_attempt_at: float = 0.0
    last_error: str = ""
    created_at: float = field(default_factory=time.time)
    delivered_at: float | None = None
    payload_purged_at: float | None = None  # retention deleted the delivered payload at this time
    history: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> OutboxMessage:
        data = dict(data)
        data["state"] = State(data["state"])
        return cls(**data)


Transport = Callable[[OutboxMessage, Path], Result]


def hl7_transport(timeout: float = DEFAULT_ACK_TIMEOUT) -> Transport:
    """Deliver an HL7 payload over MLLP and map the ACK to an outcome (``timeout``: whole exchange)."""

    def deliver(message: OutboxMessage, payload: Path) -> Result:
        try:
            ack = send_message(MllpEndpoint.parse(message.destination), payload.read_bytes(), timeout=timeout)
        except NotSent as exc:
            return Result(Outcome.UNREACHABLE, str(exc))
        except NoAck as exc:
            return Result(Outcome.UNKNOWN, str(exc))
        if ack.control_id != message.message_id:
            return Result(Outcome.UNKNOWN, f"ACK for another message ({ack.control_id!r})")
        if ack.accepted:
            return Result(Outcome.DELIVERED, ack.code)
        if ack.rejected:
            return Result(Outcome.REJECTED, f"{ack.code} {ack.text}".strip())
        return Result(Outcome.ERROR, f"{ack.code} {ack.text}".strip())

    return deliver


def dicom_transport() -> Transport:
    """Send a Part-10 payload to a configured PACS node (see ``dicom_net.pacs_nodes``): C-STORE to a
    DICOM node, STOW-RS to a DICOMweb one.

    Lost connections and timeouts are "unknown" (resent; the PACS keeps one copy per SOP
    Instance UID); a refused association or a failure status is an error (bounded retries).
    """

    def deliver(message: OutboxMessage, payload: Path) -> Result:
        from dicom_net.pacs_nodes import DicomWebNode, PacsNodes, UnknownNodeError
        from dicom_net.scu import AssociationRejected, PacsError, send

        try:
            node = PacsNodes().get(message.destination)
        except UnknownNodeError as exc:
            return Result(Outcome.ERROR, str(exc))
        service = "STOW-RS" if isinstance(node, DicomWebNode) else "C-STORE"
        try:
            result = send(node, [payload])
        except AssociationRejected as exc:
            return Result(Outcome.ERROR, str(exc))
        except PacsError as exc:  # the PACS keeps one copy per SOP Instance UID: resending is safe
            return Result(Outcome.UNREACHABLE, str(exc))
        if result.ok and result.sent == 1:
            return Result(Outcome.DELIVERED, f"{service} success")
        failed = result.failed[0] if result.failed else None
        status = f"0x{failed.status:04X}" if failed and failed.status is not None else "not sent"
        return Result(Outcome.ERROR, f"{service} {status} {failed.message if failed else ''}".strip())

    return deliver


def outbox_dir() -> Path:
    return data_dir() / "outbox"


def _process_identity(pid: int) -> list[float] | None:
    """[pid, start time] of a running process (the start time tells a reused pid apart)."""
    import psutil

    try:
        return [float(pid), psutil.Process(pid).create_time()]
    except psutil.Error:
        return None


_SENDING_HERE: set[str] = set()  # ids this process is sending right now (any thread, any Outbox)
_SENDING_HERE_LOCK = threading.Lock()


def _claim_alive(message_id: str, claim: list[float] | None) -> bool:
    """Whether the process that claimed a ``sending`` message is still sending it."""
    if not claim or _process_identity(int(claim[0])) != list(claim):
        return False
    if int(claim[0]) != os.getpid():
        return True
    with _SENDING_HERE_LOCK:  # our own claim: live only while one of our threads sends it
        return message_id in _SENDING_HERE


def attention(message: OutboxMessage) -> str:
    """What a failed or rejected message needs from a person ("" for the others)."""
    retry = f"`hulu-workstation report outbox --retry {message.message_id}` (or Retry in the report panel)"
    target = "the RIS" if message.kind == "hl7" else f"PACS node {message.destination}"
    if message.state is State.REJECTED:
        return (
            f"{target} rejected the report ({message.last_error or 'no reason given'}); it is not resent. "
            "Check the report's patient and order details with the RIS team, correct them "
            f"(Amend) and send again, or have the RIS accept it and then run {retry}."
        )
    if message.state is State.FAILED:
        if message.unacknowledged and message.last_error.startswith("no complete ACK"):
            why = (
                f"{target} did not acknowledge {message.unacknowledged} copies in time ({message.last_error}); "
                "it may have received them: check there before sending again, consider a longer ACK timeout "
                "(Settings > RIS, `report send --ack-timeout`)"
            )
        else:
            why = f"{target} refused it {message.error_attempts or message.attempts} times ({message.last_error})"
        return f"{why}. To send it again: {retry}."
    return ""


class Outbox:
    """Messages on disk in ``root`` (``<id>.json`` record + ``<id>.payload``)."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        transports: dict[str, Transport] | None = None,
        max_error_attempts: int = 5,
        max_unacknowledged: int = 3,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        base_delay: float = 5.0,
        max_delay: float = 300.0,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if retention_days < 1:
            raise ValueError("the outbox keeps delivered payloads at least 1 day")
        self.root = Path(root) if root else outbox_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.ack_timeout = ack_timeout  # read at each send: Settings > RIS may change it
        self.transports = {
            "hl7": lambda message, payload: hl7_transport(self.ack_timeout)(message, payload),
            "dicom": dicom_transport(),
            **(transports or {}),
        }
        self.max_error_attempts = max_error_attempts
        self.max_unacknowledged = max_unacknowledged
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retention_days = retention_days

    # -- storage -----------------------------------------------------------------------------

    def _record(self, message_id: str) -> Path:
        if not message_id.replace(".", "").isalnum():
            raise ValueError(f"bad outbox message id {message_id!r}")
        return self.root / f"{message_id}.json"

    def payload_path(self, message_id: str) -> Path:
        return self.root / f"{message_id}.payload"

    def _save(self, message: OutboxMessage) -> None:
        write_json_atomic(self._record(message.message_id), message.to_dict())

    def enqueue(self, message: OutboxMessage, payload: bytes) -> OutboxMessage:
        """Persist a new message; it is sent by the next :meth:`process_due`."""
        if message.result_status not in ("P", "F", "C"):
            raise ValueError("only preliminary, final or corrected reports are sent")
        if message.kind not in self.transports:
            raise ValueError(f"no transport for {message.kind!r} messages")
        if self._record(message.message_id).exists():
            raise ValueError(f"message {message.message_id} is already queued")
        write_bytes_atomic(self.payload_path(message.message_id), payload)
        message.history.append({"at": time.time(), "event": "queued"})
        self._save(message)
        log.info(
            "outbox: queued %s %s for study %s", message.kind, message.message_id, message.study_instance_uid
        )
        return message

    def get(self, message_id: str) -> OutboxMessage:
        return OutboxMessage.from_dict(read_json(self._record(message_id)))

    def messages(self, report_id: str | None = None) -> list[OutboxMessage]:
        found = []
        for path in self.root.glob("*.json"):
            try:
                found.append(OutboxMessage.from_dict(read_json(path)))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # left on disk for a person to see
                log.error("outbox: unreadable record %s (%s); other messages still go", path.name, exc)
        if report_id is not None:
            found = [m for m in found if m.report_id == report_id]
        return sorted(found, key=lambda m: m.created_at)

    def retry(self, message_id: str) -> OutboxMessage:
        """Re-queue a failed message by hand (same payload, same id). A message that a later
        signature of its report superseded on the same route is refused: the receiver would
        take the older report for the current one."""
        with self._lock(blocking=True):
            message = self.get(message_id)
            if message.state is not State.FAILED:
                raise ValueError(
                    f"only failed messages are retried by hand, this one is {message.state.value}"
                )
            newer = [
                m
                for m in self.messages(message.report_id)
                if (m.kind, m.destination) == (message.kind, message.destination)
                and m.signature_count > message.signature_count
            ]
            if newer:
                raise ValueError(
                    f"message {message_id} carries signature {message.signature_count} of its report, which "
                    f"signature {newer[-1].signature_count} (message {newer[-1].message_id}) replaced: "
                    "it is not sent again"
                )
            message.state, message.next_attempt_at = State.PENDING, 0.0
            message.error_attempts = message.unacknowledged = 0
            message.history.append({"at": time.time(), "event": "manual retry"})
            self._save(message)
            return message

    def purge_delivered(self, now: float | None = None) -> list[str]:
        """Delete the payloads of messages delivered more than ``retention_days`` ago; returns
        their ids. Records stay (delivery log); undelivered payloads are never touched."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_days * DAY_SECONDS
        purged = []
        for message in self.messages():
            if (
                message.state is not State.DELIVERED
                or message.delivered_at is None
                or message.delivered_at > cutoff
                or message.payload_purged_at is not None
            ):
                continue
            self.payload_path(message.message_id).unlink(missing_ok=True)
            message.payload_purged_at = now
            message.history.append({"at": now, "event": "payload deleted (retention)"})
            self._save(message)
            purged.append(message.message_id)
        if purged:
            log.info(
                "outbox: deleted %d delivered payload(s) older than %d days", len(purged), self.retention_days
            )
        return purged

    # -- delivery ----------------------------------------------------------------------------

    @contextmanager
    def _lock(self, *, blocking: bool) -> Iterator[bool]:
        with open(self.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _delay(self, attempts: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))

    def process_due(self, now: float | None = None, *, ignore_backoff: bool = False) -> list[OutboxMessage]:
        """Try every due message once (every pending one with ``ignore_backoff``); returns those
        attempted (a message another live process is sending is left to it). Then applies retention."""
        with self._lock(blocking=True):
            self.purge_delivered(now)
            candidates = [m.message_id for m in self.messages()]
        attempted = []
        for message_id in candidates:
            current = time.time() if now is None else now
            message = self._claim(message_id, current, ignore_backoff=ignore_backoff)
            if message is not None:
                attempted.append(self._send_claimed(message, current))
        return attempted

    def _claim(self, message_id: str, now: float, *, ignore_backoff: bool) -> OutboxMessage | None:
        """Mark a due message ``sending`` by this process (under the lock); None if not due."""
        with self._lock(blocking=True):
            try:
                message = self.get(message_id)
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if message.state is State.SENDING:
                if _claim_alive(message_id, message.claimed_by):
                    return None  # another sender (or another thread of ours) is on it
            elif message.state is not State.PENDING or (not ignore_backoff and message.next_attempt_at > now):
                return None
            message.state = State.SENDING
            message.claimed_by = _process_identity(os.getpid())
            message.attempts += 1
            self._save(message)  # a crash from here on means "resend the same payload"
            with _SENDING_HERE_LOCK:
                _SENDING_HERE.add(message_id)
            return message

    def _send_claimed(self, message: OutboxMessage, now: float) -> OutboxMessage:
        """Send a claimed message without the lock, then record the outcome under it."""
        try:
            try:
                result = self.transports[message.kind](message, self.payload_path(message.message_id))
            except Exception as exc:  # a transport bug must not lose the message
                result = Result(Outcome.ERROR, f"{type(exc).__name__}: {exc}")
            with self._lock(blocking=True):
                self._record_outcome(message, result, now)
        finally:
            with _SENDING_HERE_LOCK:
                _SENDING_HERE.discard(message.message_id)
        return message

    def _record_outcome(self, message: OutboxMessage, result: Result, now: float) -> None:
        message.claimed_by = None
        message.last_error = "" if result.outcome is Outcome.DELIVERED else result.detail
        if result.outcome is Outcome.DELIVERED:
            message.state, message.delivered_at = State.DELIVERED, time.time()
        elif result.outcome is Outcome.REJECTED:
            message.state = State.REJECTED
        elif result.outcome is Outcome.ERROR:
            message.error_attempts += 1
            exhausted = message.error_attempts >= self.max_error_attempts
            message.state = State.FAILED if exhausted else State.PENDING
            message.next_attempt_at = now + self._delay(message.error_attempts)
        elif result.outcome is Outcome.UNKNOWN:
            message.unacknowledged += 1
            exhausted = message.unacknowledged >= self.max_unacknowledged
            message.state = State.FAILED if exhausted else State.PENDING
            message.next_attempt_at = now + self._delay(message.attempts)
        else:
            message.state = State.PENDING
            message.next_attempt_at = now + self._delay(message.attempts)
        message.history.append({"at": time.time(), "event": result.outcome.value, "detail": result.detail})
        message.history = message.history[:1] + message.history[1:][-HISTORY_KEPT:]  # "queued" + the latest
        self._save(message)
        log.info(
            "outbox: %s %s attempt %d -> %s",
            message.kind,
            message.message_id,
            message.attempts,
            message.state.value,
        )

    def deliver_now(self, message_id: str, *, attempts: int = 1, wait: float = 0.0) -> OutboxMessage:
        """Send one message immediately, up to ``attempts`` tries ``wait`` seconds apart (CLI use).
        A message another live process is sending is returned as it stands (``sending``)."""
        message = self.get(message_id)
        for attempt in range(attempts):
            claimed = self._claim(message_id, time.time(), ignore_backoff=True)
            if claimed is None:
                return self.get(message_id)
            message = self._send_claimed(claimed, time.time())
            if message.state is not State.PENDING:
                return message
            if attempt + 1 < attempts:
                time.sleep(wait)
        return message


class OutboxWorker(threading.Thread):
    """Background delivery loop for the app: processes due messages every ``interval`` seconds."""

    def __init__(self, outbox: Outbox, interval: float = 5.0) -> None:
        super().__init__(name="report-outbox", daemon=True)
        self.outbox = outbox
        self.interval = interval
        self._stop_event = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.outbox.process_due()
            except Exception:  # keep delivering; the message records carry the details
                log.exception("outbox: delivery loop error")
            self._wake.wait(self.interval)
            self._wake.clear()
