"""Queue a signed report for the RIS (HL7 ORU) and the PACS (DICOM SR) through the outbox.

Nothing here sends from a draft, and one signature is queued at most once per route: a second
click on "send" does not duplicate a report. The audit record notes every queued message.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydicom import Dataset, dcmread

from app.reporting.audit import AuditRecord
from app.reporting.dicom_sr import build_report_sr
from app.reporting.hl7_oru import OruR01
from app.reporting.mllp import MllpEndpoint
from app.reporting.outbox import Outbox, OutboxMessage, State
from app.reporting.report import Report, ReportError, ReportStatus
from app.reporting.ris_status import first_final_status


class AlreadyQueued(ReportError):
    """This signature of the report is already queued (or delivered) on this route."""


def new_message_id() -> str:
    """A fresh MSH-10 (20 hex digits, unique per message, reused for every resend)."""
    return uuid.uuid4().hex[:20]


def _check_not_queued(outbox: Outbox, report: Report, kind: str, destination: str) -> None:
    if report.status is ReportStatus.DRAFT:
        raise ReportError("a draft report is never sent")
    if report.edited_since_signed:
        raise ReportError(
            f"the report was changed after it was signed {report.status.value}: sign it again before sending"
        )
    for message in outbox.messages(report.report_id):
        same = (message.kind, message.destination, message.signature_count) == (
            kind,
            destination,
            len(report.signatures),
        )
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
        report,
        control_id=control_id,
        sending_application=sending_application,
        sending_facility=sending_facility,
        receiving_application=receiving_application,
        receiving_facility=receiving_facility,
        result_status=first_final_status(outbox, report, str(endpoint)),
        ai_models=audit.ai_models(),
    )
    message = OutboxMessage(
        message_id=control_id,
        kind="hl7",
        destination=str(endpoint),
        report_id=report.report_id,
        study_instance_uid=report.study.study_instance_uid,
        result_status=oru.status_code,
        signature_count=len(report.signatures),
    )
    outbox.enqueue(message, oru.encode())
    audit.add_event(
        "queued", route="hl7", message_id=control_id, destination=str(endpoint), result_status=oru.status_code
    )
    return message


def previous_sr_versions(outbox: Outbox, report: Report) -> list[Dataset]:
    """Headers of this report's SRs already delivered (predecessors of a correction)."""
    found = []
    for message in outbox.messages(report.report_id):
        if message.kind == "dicom" and message.state is State.DELIVERED:
            found.append(dcmread(outbox.payload_path(message.message_id), stop_before_pixels=True))
    return found


def queue_report_to_pacs(
    report: Report,
    audit: AuditRecord,
    outbox: Outbox,
    node_name: str,
    study_instance_paths: Sequence[Path],
    *,
    institution_name: str = "",
) -> OutboxMessage:
    """Build the SR (evidence: the key images, or the first of ``study_instance_paths``) and queue it.

    ``study_instance_paths``: archive files of the study (headers read, pixels not).
    """
    _check_not_queued(outbox, report, "dicom", node_name)
    wanted = {key.sop_instance_uid for key in report.key_images}
    evidence: list[Dataset] = []
    for key in report.key_images:
        if key.path:
            evidence.append(dcmread(key.path, stop_before_pixels=True))
    if not evidence:
        evidence = [dcmread(p, stop_before_pixels=True) for p in list(study_instance_paths)[:1]]
    missing = wanted - {ds.SOPInstanceUID for ds in evidence}
    if missing:
        raise ReportError(f"{len(missing)} key image file(s) not found in the archive")
    sr = build_report_sr(
        report,
        evidence,
        previous_versions=previous_sr_versions(outbox, report),
        institution_name=institution_name,
        ai_models=audit.ai_models(),
    )
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    message = OutboxMessage(
        message_id=new_message_id(),
        kind="dicom",
        destination=node_name,
        report_id=report.report_id,
        study_instance_uid=report.study.study_instance_uid,
        result_status=report.status.hl7_code,
        signature_count=len(report.signatures),
    )
    outbox.enqueue(message, buffer.getvalue())
    audit.add_event(
        "queued",
        route="dicom-sr",
        message_id=message.message_id,
        destination=node_name,
        sop_instance_uid=str(sr.SOPInstanceUID),
        series_instance_uid=str(sr.SeriesInstanceUID),
    )
    return message
