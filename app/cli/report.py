"""``hulu-workstation report``: draft, sign and export reports without the GUI.

    report draft --study UID [--model DIR] [--archive DIR] [--slices N] [--max-new-tokens N]
    report send --study UID --text-file F --status P|F|C --user LOGIN [--password-stdin]
                [--ris HOST:PORT] [--pacs NODE] [--archive DIR] [--ack-timeout SECONDS]
    report outbox [--process] [--retry ID] [--serve [--interval SECONDS]]

``draft`` prints an AI draft (stored as a draft report, never sent). ``send`` signs the text of
the file (``Findings:`` / ``Impression:`` headers; without headers all of it is Findings) with the
given status as the workstation user LOGIN (see `hulu-workstation users`; the password is asked
for, or read from the first line of stdin with --password-stdin) and queues it for the RIS (HL7
ORU over MLLP) and/or the PACS (DICOM SR) through the persistent outbox in one durable step
(:mod:`app.reporting.delivery`), trying each once now; what is not delivered stays queued for the
delivery service. Running the same ``send`` again (after a crash, say) signs nothing new: it
completes and delivers what that signature queued.
``outbox --serve`` is the delivery service: it keeps delivering while the app is closed.
Exit codes: 0 done, 1 rejected/failed, 2 bad input, 3 queued for a later retry, 4 wrong user or
password (nothing signed, nothing sent).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from app.reporting.audit import AuditRecord, ReportStore, SentInput
from app.reporting.delivery import Routes, SignedDelivery
from app.reporting.outbox import Outbox, OutboxMessage, State, attention
from app.reporting.preflight import check_before_signing
from app.reporting.report import Report, ReportError, ReportStatus, StudyInfo
from app.reporting.studies import study_info, study_series_paths
from app.reporting.users import UserError, UserStore, read_password

log = logging.getLogger(__name__)
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QUEUED, EXIT_AUTH = 1, 2, 3, 4


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="draft, sign and export reports (RIS HL7, PACS SR)")
    sub = report.add_subparsers(dest="report_command", metavar="ACTION", required=True)

    draft = sub.add_parser("draft", help="print an AI draft report for a study (never sent)")
    draft.add_argument("--study", required=True, help="Study Instance UID in the archive")
    draft.add_argument("--model", type=Path, help="Hulu-Med checkpoint folder (default: from Settings)")
    draft.add_argument("--archive", type=Path, help="archive folder (default: the workstation's)")
    draft.add_argument(
        "--slices", type=int, default=32, help="slices sampled through a 3D series (default 32)"
    )
    draft.add_argument("--max-new-tokens", type=int, default=768)
    draft.add_argument("--device", default="auto", help="auto, cuda or cpu")
    draft.set_defaults(func=run_draft)

    send = sub.add_parser("send", help="sign a report text and send it to the RIS and/or PACS")
    send.add_argument("--study", required=True, help="Study Instance UID in the archive")
    send.add_argument("--text-file", required=True, type=Path, help="UTF-8 text with Findings:/Impression:")
    send.add_argument(
        "--status",
        required=True,
        choices=("P", "F", "C"),
        help="P preliminary, F final, C correction of a final report",
    )
    send.add_argument("--user", required=True, help="the signing workstation user's login")
    send.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    send.add_argument("--ris", help="RIS MLLP address HOST:PORT")
    send.add_argument("--pacs", help="PACS node name (see `hulu-workstation pacs`)")
    send.add_argument("--archive", type=Path, help="archive folder (default: the workstation's)")
    send.add_argument("--sending-application", default="HULUWS")
    send.add_argument("--receiving-application", default="RIS")
    send.add_argument(
        "--ack-timeout",
        type=_positive_seconds,
        help="seconds to wait for the RIS's ACK (default: Settings > RIS, 30)",
    )
    send.set_defaults(func=run_send)

    outbox = sub.add_parser("outbox", help="show queued report messages; deliver the due ones")
    outbox.add_argument("--process", action="store_true", help="try every pending message once now")
    outbox.add_argument("--retry", metavar="ID", help="re-queue a failed message")
    outbox.add_argument(
        "--serve",
        action="store_true",
        help="keep delivering due messages until stopped (the delivery service; one per outbox)",
    )
    outbox.add_argument(
        "--interval", type=_positive_seconds, default=5.0, help="--serve: seconds between rounds"
    )
    outbox.set_defaults(func=run_outbox)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds from 0 to 3600 expected, got {text!r}")
    return value


# -- study lookup ------------------------------------------------------------------------------


def _model_folder(given: Path | None) -> Path | None:
    if given is not None:
        return given
    try:
        from app.services.settings_store import SettingsStore

        folder = SettingsStore().load().model.folder
    except Exception:  # no Qt/settings: the caller reports the absent model
        return None
    return Path(folder) if folder else None


# -- draft --------------------------------------------------------------------------------------


def run_draft(args: argparse.Namespace) -> int:
    from app.assistant.ai_inputs import (
        AIView,
        resolve_mode,
        resolve_plane,
        resolve_window,
        visual_item_for,
    )
    from app.assistant.drafting import DraftError, DraftSettings, draft_report
    from app.assistant.model_service import ModelService
    from viewer.loader import load_volume

    try:
        series = study_series_paths(args.study, args.archive)
        series_uid, _, paths = series[0]
        volume, _warnings = load_volume(paths)
        view = AIView(slices=args.slices)
        item = visual_item_for(volume, view)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    window = resolve_window(volume, view)
    mode = resolve_mode(volume, view)
    sent = SentInput(
        series_uid,
        {"2d": "image", "3d": "volume", "video": "cine"}[mode],
        resolve_plane(volume, view) if mode != "video" else "",
        list(item.sampled_indices),
        window[1] if window else None,
        window[0] if window else None,
        item.frame_count,
    )
    service = ModelService(_model_folder(args.model), device=args.device, quantization="auto")
    state = service.load_now()
    if not state.ready:
        print(state.message, file=sys.stderr)
        return EXIT_BAD_INPUT
    report = Report(study_info(paths))
    audit = AuditRecord(report.report_id, report.study.study_instance_uid)
    try:
        generation = draft_report(
            service, report, audit, [item], [sent], settings=DraftSettings(max_new_tokens=args.max_new_tokens)
        )
    except DraftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        service.close()
    ReportStore().save(report, audit)
    print("AI DRAFT - not reviewed, not for diagnosis. Nothing has been sent.")
    print(f"Report {report.report_id} ({generation.outcome}, {generation.new_tokens} tokens)")
    for key, title in (("findings", "Findings"), ("impression", "Impression")):
        print(f"\n{title}:\n{report.text(key)}")
    return 0


# -- send ---------------------------------------------------------------------------------------


def parse_report_text(text: str) -> dict[str, str]:
    """Findings/Impression of a radiologist's text file (no AI involved, nothing dropped)."""
    from app.assistant.drafting import split_draft

    return split_draft(text.replace("\r\n", "\n"), final=True)


def _report_to_sign(
    store: ReportStore, info: StudyInfo, status: ReportStatus, sections: dict[str, str]
) -> tuple[Report, bool]:
    """The report to sign and whether it is already signed with exactly this status and text
    (a repeated ``send``: nothing is signed again, its messages are completed and delivered)."""
    existing = store.reports_for_study(info.study_instance_uid)
    latest = existing[-1] if existing else None
    if (
        latest is not None
        and latest.status is status
        and not latest.edited_since_signed
        and all(latest.text(key) == text for key, text in sections.items())
    ):
        return latest, True
    if status is ReportStatus.CORRECTED:
        if latest is None or latest.status not in (ReportStatus.FINAL, ReportStatus.CORRECTED):
            raise ReportError("a correction (C) needs a final report of this study signed before")
        latest.open_amendment()
        return latest, False
    if latest is not None and latest.status in (ReportStatus.FINAL, ReportStatus.CORRECTED):
        raise ReportError("this study already has a final report: use a correction (--status C)")
    if latest is not None and (latest.status is ReportStatus.DRAFT or status is ReportStatus.FINAL):
        return latest, False
    return Report(info), False


def configured_outbox(ack_timeout: float | None = None) -> Outbox:
    """The outbox with the retention period and ACK timeout from Settings (the app's settings file)."""
    from app.services.settings_store import SettingsStore

    settings = SettingsStore().load()
    return Outbox(
        retention_days=settings.general.outbox_retention_days,
        ack_timeout=ack_timeout or float(settings.ris.ack_timeout),
    )


def _print_state(message: OutboxMessage) -> None:
    print(
        f"{message.kind} {message.message_id} -> {message.destination}: {message.state.value}"
        + (f" ({message.last_error})" if message.last_error else "")
    )
    if attention(message):
        print(f"  {attention(message)}")


def run_send(args: argparse.Namespace) -> int:
    if not args.ris and not args.pacs:
        print("error: give --ris HOST:PORT and/or --pacs NODE", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        user = UserStore().authenticate(args.user, read_password(args.password_stdin))
    except UserError as exc:
        print(f"error: {exc}: nothing signed, nothing sent", file=sys.stderr)
        return EXIT_AUTH
    store, outbox = ReportStore(), configured_outbox(args.ack_timeout)
    routes = Routes(
        ris=args.ris or "",
        msh={
            "sending_application": args.sending_application,
            "receiving_application": args.receiving_application,
        },
        pacs=args.pacs or "",
        archive=str(args.archive or ""),
    )
    try:
        series = study_series_paths(args.study, args.archive)
        all_paths = [p for _, _, paths in series for p in paths]
        info = study_info(all_paths)
        delivery = SignedDelivery(store, outbox, lambda _uid: all_paths)
        delivery.complete_interrupted()
        sections = parse_report_text(args.text_file.read_text(encoding="utf-8"))
        status = ReportStatus.from_hl7_code(args.status)
        report, already_signed = _report_to_sign(store, info, status, sections)
        try:
            audit = store.load(report.report_id)[1]
        except FileNotFoundError:
            audit = AuditRecord(report.report_id, info.study_instance_uid)
        if already_signed:
            print(f"report {report.report_id} is already signed {status.value}: delivering it")
            messages = delivery.queue(report, audit, routes)
        else:
            for key, text in sections.items():
                report.set_text(key, text)
            report.accept_ai()  # the radiologist signs the file's text as a whole
            check_before_signing(report, status, user, for_ris=bool(args.ris))
            messages = delivery.sign_and_queue(report, audit, status, user, routes, via="cli")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log.info("report %s signed %s for study %s", report.report_id, status.value, info.study_instance_uid)
    states = []
    for message in messages:
        delivered = outbox.deliver_now(message.message_id)
        _print_state(delivered)
        states.append(delivered.state)
    if any(s in (State.REJECTED, State.FAILED) for s in states):
        return EXIT_FAILED
    return 0 if all(s is State.DELIVERED for s in states) else EXIT_QUEUED


def serve_outbox(outbox: Outbox, interval: float, stop: threading.Event) -> None:
    """The delivery service's loop: complete interrupted sign-offs, deliver due messages, repeat."""
    delivery = SignedDelivery(ReportStore(), outbox)
    while not stop.is_set():
        try:
            delivery.complete_interrupted()
            outbox.process_due()
        except Exception:  # keep delivering; the message records carry the details
            log.exception("outbox: delivery round failed")
        stop.wait(interval)


def _run_service(outbox: Outbox, interval: float) -> int:
    lock = open(outbox.root / ".service.lock", "a+")  # held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"the delivery service for {outbox.root} is already running")
        return 0
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("outbox delivery service started (pid %d, every %g s)", os.getpid(), interval)
    serve_outbox(outbox, interval, stop)
    log.info("outbox delivery service stopped")
    return 0


def run_outbox(args: argparse.Namespace) -> int:
    outbox = configured_outbox()
    if args.serve:
        return _run_service(outbox, args.interval)
    try:
        if args.retry:
            outbox.retry(args.retry)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.process or args.retry:
        SignedDelivery(ReportStore(), outbox).complete_interrupted()
        outbox.process_due(ignore_backoff=True)
    for m in outbox.messages():
        print(
            f"{m.message_id} {m.kind:5} {m.result_status} {m.state.value:9} attempts={m.attempts} "
            f"-> {m.destination} study={m.study_instance_uid}"
            + (f" ({m.last_error})" if m.last_error else "")
        )
        if attention(m):
            print(f"  {attention(m)}")
    return 0
