"""Queue a signed report for the RIS (HL7 ORU) and the PACS (DICOM SR) through the outbox.

Nothing here sends from a draft, and one signature is queued at most once per route: a second
click on "send" does not duplicate a report. The audit record notes every queued message.
"""

from __future__ import annotations

import uuid

from app.reporting.audit import AuditRecord
from app.reporting.hl7_oru import OruR01
from app.reporting.mllp import MllpEndpoint
from app.reporting.outbox import Outbox, OutboxMessage, State
from app.reporting.report import Report, ReportError, ReportStatus


class AlreadyQueued(ReportError):
    """This signature of the report is already queued (or delivered) on this route."""


def new_message_id() -> str:
    """A fresh MSH-10 (20 hex digits, unique per message, reused for every resend)."""
    return uuid.uuid4().hex[:20]


def _check_not_queued(outbox: Outbox, report: Report, kind: str, destination: str) -> None:
    if report.status is ReportStatus.DRAFT:
        raise ReportError("a draft report is never sent")
    for message in outbox.messages(report.report_id):
        same = (message.kind, message.destination, message.signature_count) == (
            kind, destination, len(report.signatures))
        if same and message.state not in (State.REJECTED, State.FAILED):
            raise AlreadyQueued(f"this signature is already {message.state.value} to {destination}")


def queue_report_to_ris(
    report: Report,
    audit: AuditRecord,
    outbox: Outbox,
    ris: str,
    *,
    sending_application: str = "HULU-WS",
    sending_facility: str = "",
    receiving_application: str = "RIS",
    receiving_facility: str = "",
) -> OutboxMessage:
    """Build the ORU^R01 for the report's current signature and put it in the outbox."""
    endpoint = MllpEndpoint.parse(ris)
    _check_not_queued(outbox, report, "hl7", str(endpoint))
    control_id = new_message_id()
    oru = OruR01(
        report, control_id=control_id, sending_application=sending_application,
        sending_facility=sending_facility, receiving_application=receiving_application,
        receiving_facility=receiving_facility,
    )
    message = OutboxMessage(
        message_id=control_id, kind="hl7", destination=str(endpoint), report_id=report.report_id,
        study_instance_uid=report.study.study_instance_uid, result_status=oru.status_code,
        signature_count=len(report.signatures),
    )
    outbox.enqueue(message, oru.encode())
    audit.add_event("queued", route="hl7", message_id=control_id, destination=str(endpoint),
                    result_status=oru.status_code)
    return message
