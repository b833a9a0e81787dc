"""Signing and queueing a report's messages as one durable step.

A signature that should go to the RIS and/or the PACS is first written down as an *intent*
(``<outbox>/intents/<report id>.json``: which signature, which routes); then the signed report is
saved, then its messages are queued, then the intent is removed. A crash anywhere in between is
completed by :meth:`SignedDelivery.complete_interrupted` (run by the CLI, the app and the
delivery service): a signature that reached the store gets exactly the messages it asked for, one
that did not is dropped with its intent. Queueing is idempotent (one message per signature and
route), so the RIS never receives a final twice nor a correction for a final it never got.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.reporting.atomic import read_json, write_json_atomic
from app.reporting.audit import AuditRecord, ReportStore
from app.reporting.export import AlreadyQueued, queue_report_to_pacs, queue_report_to_ris
from app.reporting.mllp import MllpEndpoint
from app.reporting.outbox import Outbox, OutboxMessage, State
from app.reporting.report import Report, ReportStatus
from app.reporting.studies import study_series_paths
from app.reporting.users import User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routes:
    """Where a signature goes: the RIS (``HOST:PORT`` and the MSH names) and/or a PACS node."""

    ris: str = ""
    msh: dict[str, str] = field(default_factory=dict)  # sending_application, receiving_facility, ...
    pacs: str = ""
    archive: str = ""  # where the study's files are (the SR's evidence); "" = the workstation's

    def __bool__(self) -> bool:
        return bool(self.ris or self.pacs)


class SignedDelivery:
    """Signs reports and queues their messages; completes what a crash interrupted."""

    def __init__(
        self,
        store: ReportStore,
        outbox: Outbox,
        study_paths: Callable[[str], list[Path]] | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.study_paths = study_paths
        self.intents = outbox.root / "intents"

    def _intent(self, report_id: str) -> Path:
        return self.intents / f"{report_id}.json"

    def sign_and_queue(
        self,
        report: Report,
        audit: AuditRecord,
        status: ReportStatus | str,
        signer: User,
        routes: Routes,
        **audit_details: str,
    ) -> list[OutboxMessage]:
        """Sign ``report`` as the authenticated ``signer`` and queue it on ``routes``; returns the
        queued messages (none without routes)."""
        intent = self._intent(report.report_id)
        if routes:
            write_json_atomic(intent, {"signature_count": len(report.signatures) + 1, **asdict(routes)})
        try:
            report.sign(status, signer.xcn_name, user=signer.login, licence=signer.licence)
        except BaseException:
            intent.unlink(missing_ok=True)
            raise
        audit.add_event(
            "signed",
            status=report.status.value,
            radiologist=signer.xcn_name,
            user=signer.login,
            licence=signer.licence,
            **audit_details,
        )
        self.store.save(report, audit)  # the signature is durable; its messages follow from the intent
        if not routes:
            return []
        messages = self._queue(report, audit, routes)
        intent.unlink(missing_ok=True)
        return messages

    def queue(self, report: Report, audit: AuditRecord, routes: Routes) -> list[OutboxMessage]:
        """Queue an already signed report on ``routes`` (once per signature and route)."""
        return self._queue(report, audit, routes)

    def complete_interrupted(self) -> list[OutboxMessage]:
        """Queue the messages of signatures whose queueing a crash interrupted; returns them."""
        if not self.intents.is_dir():
            return []
        queued = []
        for path in sorted(self.intents.glob("*.json")):
            report_id = path.stem
            try:
                wanted = read_json(path)
                report, audit = self.store.load(report_id)
            except FileNotFoundError:
                path.unlink(missing_ok=True)  # the report never reached the store: nothing was signed
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("outbox: unreadable send intent for report %s (%s); kept", report_id, exc)
                continue
            if len(report.signatures) < wanted["signature_count"] or report.edited_since_signed:
                path.unlink(missing_ok=True)  # the signature was not saved: nothing to send
                continue
            routes = Routes(
                ris=wanted["ris"], msh=dict(wanted["msh"]), pacs=wanted["pacs"], archive=wanted["archive"]
            )
            queued += self._queue(report, audit, routes)
            path.unlink(missing_ok=True)
            log.info("outbox: completed the interrupted queueing of report %s", report_id)
        return queued

    def _queue(self, report: Report, audit: AuditRecord, routes: Routes) -> list[OutboxMessage]:
        messages = []
        if routes.ris:
            try:
                messages.append(queue_report_to_ris(report, audit, self.outbox, routes.ris, **routes.msh))
            except AlreadyQueued:
                messages.append(self._current(report, "hl7", str(MllpEndpoint.parse(routes.ris))))
        if routes.pacs:
            try:
                uid = report.study.study_instance_uid
                if self.study_paths is not None:
                    paths = self.study_paths(uid)
                else:
                    archive = Path(routes.archive) if routes.archive else None
                    paths = [p for _, _, files in study_series_paths(uid, archive) for p in files]
                messages.append(queue_report_to_pacs(report, audit, self.outbox, routes.pacs, paths))
            except AlreadyQueued:
                messages.append(self._current(report, "dicom", routes.pacs))
        self.store.save(report, audit)
        return messages

    def _current(self, report: Report, kind: str, destination: str) -> OutboxMessage:
        """The message already queued for the report's current signature on one route."""
        return next(
            m
            for m in reversed(self.outbox.messages(report.report_id))
            if (m.kind, m.destination, m.signature_count) == (kind, destination, len(report.signatures))
            and m.state not in (State.REJECTED, State.FAILED)
        )
