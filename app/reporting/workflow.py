"""The report workflow for one open study (plain Python; the report editor is its view).

Opens the study's latest report (or a new draft) with its key images, applies templates, keeps
key images (their displayed pixels saved beside the report), signs as an authenticated
workstation user after the export checks pass, queues exports through the outbox and saves
report + audit after every change. Nothing is sent unless :meth:`send_to_ris` /
:meth:`send_to_pacs` is called on a signed report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.reporting.audit import AuditRecord, ReportStore
from app.reporting.delivery import Routes, SignedDelivery
from app.reporting.export import queue_report_to_pacs, queue_report_to_ris
from app.reporting.outbox import Outbox, OutboxMessage
from app.reporting.pdf import render_pdf
from app.reporting.preflight import check_before_signing
from app.reporting.report import KeyImage, Report, ReportError, ReportStatus, StudyInfo
from app.reporting.templates import ReportTemplate
from app.reporting.users import AuthenticationError, User, UserStore

log = logging.getLogger(__name__)


@dataclass
class PdfJob:
    """Renders one report snapshot to a PDF (runs on a worker thread)."""

    report: Report
    key_pixels: dict[str, np.ndarray]
    path: Path
    institution: str = ""
    ai_models: list[tuple[str, str]] = field(default_factory=list)
    written: bool = False  # set once the file is in place (a cancel after that still wrote it)

    @property
    def status(self) -> ReportStatus:
        return self.report.status

    def __call__(self, progress: Callable[[int, int, str], None], cancel: threading.Event) -> list[str]:
        progress(0, 1, "writing PDF")
        warnings = render_pdf(
            self.report,
            self.path,
            key_images=self.key_pixels,
            institution=self.institution,
            ai_models=self.ai_models,
        )
        self.written = True
        progress(1, 1, "PDF written")
        return warnings


class ReportWorkflow:
    def __init__(
        self,
        store: ReportStore,
        outbox: Outbox,
        study_paths: Callable[[str], list[Path]] | None = None,
        users: UserStore | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.study_paths = study_paths or (lambda _uid: [])
        self.delivery = SignedDelivery(store, outbox, self.study_paths)
        self.users = users or UserStore()
        self.report: Report | None = None
        self.audit: AuditRecord | None = None
        self.key_pixels: dict[str, np.ndarray] = {}  # key image name -> displayed pixels
        self.key_labels: dict[str, str] = {}  # key image name -> what the editor shows

    def open_study(self, info: StudyInfo) -> Report:
        """The study's latest report, or a new empty draft."""
        existing = self.store.reports_for_study(info.study_instance_uid)
        if existing:
            self.report, self.audit = self.store.load(existing[-1].report_id)
        else:
            self.report = Report(info)
            self.audit = AuditRecord(self.report.report_id, info.study_instance_uid)
        self.key_pixels, self.key_labels = {}, {}
        for name, label, pixels in self.store.key_images(self.report.report_id):
            self.key_pixels[name], self.key_labels[name] = pixels, label
        return self.report

    def _require(self) -> Report:
        if self.report is None or self.audit is None:
            raise ReportError("no study is open")
        return self.report

    def save(self) -> None:
        report = self._require()
        self.store.save(report, self.audit)

    def apply_template(self, template: ReportTemplate) -> None:
        report = self._require()
        if report.text("findings").strip() or report.text("impression").strip():
            raise ReportError("the report already has text: clear it before applying a template")
        report.replace_with_template("findings", template.findings)
        report.replace_with_template("impression", template.impression)
        self.audit.add_event("template", name=template.name)
        self.save()

    def add_key_image(self, key: KeyImage | None, pixels: np.ndarray, label: str) -> str:
        """Attach a key image (reference when the plane is the acquired one; pixels always)."""
        report = self._require()
        if not report.editable:
            raise ReportError("a signed report is locked: open an amendment to change its key images")
        name = key.sop_instance_uid if key is not None else label
        if key is not None and all(k.sop_instance_uid != key.sop_instance_uid for k in report.key_images):
            report.key_images.append(key)
        self.key_pixels[name], self.key_labels[name] = np.asarray(pixels), label
        self.store.save_key_image(report.report_id, name, label, self.key_pixels[name])
        self.save()
        return name

    def sign(
        self,
        status: ReportStatus | str,
        login: str,
        password: str,
        *,
        routes: Routes | None = None,
        for_ris: bool = False,
    ) -> tuple[User, list[OutboxMessage]]:
        """Sign as the workstation user ``login`` whose ``password`` is checked now and, in the
        same durable step, queue the report on ``routes`` (the RIS when Settings > RIS sends on
        signing); returns the signer and the queued messages.

        A wrong password (:class:`AuthenticationError`) or a report the exports would refuse
        (:class:`ReportError`, saying what to fix) signs nothing and sends nothing. ``for_ris``: a
        RIS is configured, so the HL7 message is checked even when it is not sent now."""
        report = self._require()
        status = ReportStatus(status)
        self.save()  # the text as signed is on disk even if signing is refused
        try:
            user = self.users.authenticate(login, password)
        except AuthenticationError:
            self.audit.add_event("signing refused", status=status.value, user=login, reason="authentication")
            self.save()
            raise
        routes = routes or Routes()
        check_before_signing(report, status, user, for_ris=for_ris or bool(routes.ris))
        messages = self.delivery.sign_and_queue(report, self.audit, status, user, routes)
        log.info(
            "report %s signed %s by user %s (study %s)",
            report.report_id,
            report.status.value,
            user.login,
            report.study.study_instance_uid,
        )
        return user, messages

    def amend(self) -> None:
        report = self._require()
        report.open_amendment()
        self.audit.add_event("amendment opened", version=str(report.version))
        self.save()

    def send_to_ris(self, address: str, **msh: str) -> OutboxMessage:
        message = queue_report_to_ris(self._require(), self.audit, self.outbox, address, **msh)
        self.save()
        return message

    def send_to_pacs(self, node: str) -> OutboxMessage:
        report = self._require()
        message = queue_report_to_pacs(
            report, self.audit, self.outbox, node, self.study_paths(report.study.study_instance_uid)
        )
        self.save()
        return message

    def export_pdf(self, path: Path, institution: str = "") -> list[str]:
        """Write the PDF now and record it (CLI and scripts; the editor uses :meth:`pdf_job`)."""
        render = self.pdf_job(path, institution)
        warnings = render(lambda *_: None, threading.Event())
        self.record_pdf_export(render)
        return warnings

    def pdf_job(self, path: Path, institution: str = "") -> PdfJob:
        """A task function (``fn(progress, cancel)``) that writes the PDF of a snapshot taken now:
        edits made while it runs on a worker thread do not change what it writes. Record the
        export with :meth:`record_pdf_export` once it has finished."""
        report = self._require()
        snapshot = Report.from_dict(report.to_dict())
        return PdfJob(snapshot, dict(self.key_pixels), Path(path), institution, self.audit.ai_models())

    def record_pdf_export(self, job: PdfJob) -> None:
        """Audit a finished PDF export, in its report's record even if another study is open now."""
        if self.report is not None and self.report.report_id == job.report.report_id:
            self.audit.add_event("pdf exported", status=job.status.value)
            self.save()
            return
        report, audit = self.store.load(job.report.report_id)
        audit.add_event("pdf exported", status=job.status.value)
        self.store.save(report, audit)

    def messages(self) -> list[OutboxMessage]:
        return self.outbox.messages(self.report.report_id) if self.report else []
