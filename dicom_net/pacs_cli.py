"""`hulu-workstation pacs ...`: configure PACS nodes, verify, query, retrieve and send.

A node is a DICOM AE (``--aet --host --port``: C-ECHO, C-FIND, C-MOVE/C-GET, C-STORE) or a
DICOMweb service (``--dicomweb URL``: QIDO-RS, WADO-RS, STOW-RS); every action takes either by
name. A DICOMweb password is read from stdin (``--password-stdin``, never a command-line argument,
which other users can see) and kept in ``pacs_secrets.json`` beside the nodes file, mode 0600.

Exit status: 0 when everything asked for was done, 1 when the PACS refused or part of the work
failed (details on stderr), 2 for bad input (unknown node, invalid option values).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dicom_net.pacs_nodes import (
    DEFAULT_CALLING_AET,
    RETRIEVE_METHODS,
    AnyNode,
    DicomWebNode,
    PacsNode,
    PacsNodeError,
    PacsNodes,
    TlsSettings,
    UnknownNodeError,
)
from dicom_net.scu_find import LEVELS, QueryError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Columns of the text table per query level (all keys are in the --json output).
TABLE_COLUMNS = {
    "patient": (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "study": (
        "StudyDate",
        "PatientID",
        "PatientName",
        "AccessionNumber",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyDescription",
        "StudyInstanceUID",
    ),
    "series": (
        "SeriesNumber",
        "Modality",
        "NumberOfSeriesRelatedInstances",
        "SeriesDescription",
        "SeriesInstanceUID",
    ),
    "image": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    pacs = subparsers.add_parser(
        "pacs",
        help="PACS nodes: configure, echo, find, retrieve, send",
        description="Talk to a PACS (DICOM C-ECHO, C-FIND, C-MOVE/C-GET, C-STORE, or DICOMweb "
        "QIDO-RS, WADO-RS, STOW-RS).",
    )
    sub = pacs.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    nodes = sub.add_parser("nodes", help="add, list or remove configured PACS nodes")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    add = nodes_sub.add_parser(
        "add",
        help="add (or with --replace, change) a node",
        description="A DICOM node: --aet --host --port. A DICOMweb node: --dicomweb URL, with --user and "
        "--password-stdin (HTTP basic) or --token-file (bearer), and --tls-ca for an https URL whose "
        "certificate a private CA signed.",
    )
    add.add_argument("name")
    add.add_argument("--aet", help="the PACS's AE title (DICOM node)")
    add.add_argument("--host", help="DICOM node")
    add.add_argument("--port", type=int, help="DICOM node")
    add.add_argument("--dicomweb", metavar="URL", help="DICOMweb root, e.g. https://pacs:8042/dicom-web")
    add.add_argument("--user", help="DICOMweb: HTTP basic user (the password comes from --password-stdin)")
    add.add_argument(
        "--password-stdin", action="store_true", help="DICOMweb: read the password from stdin (one line)"
    )
    add.add_argument("--token-file", help="DICOMweb: file holding a bearer token (read at each use)")
    add.add_argument(
        "--calling-aet",
        default=DEFAULT_CALLING_AET,
        help=f"our AE title as the PACS knows it, also the C-MOVE destination (default {DEFAULT_CALLING_AET})",
    )
    add.add_argument(
        "--method", choices=RETRIEVE_METHODS, default="move", help="how to retrieve (default move)"
    )
    add.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the PACS (default 30)")
    add.add_argument(
        "--tls-ca",
        help="CA certificate (PEM) that signed the PACS certificate: enables DICOM TLS; for "
        "DICOMweb, the CA to trust for its https URL",
    )
    add.add_argument("--tls-cert", help="our client certificate (PEM) for mutual TLS")
    add.add_argument("--tls-key", help="our client private key (PEM) for mutual TLS")
    add.add_argument("--replace", action="store_true", help="replace an existing node of that name")
    add.set_defaults(func=_nodes_add)
    lst = nodes_sub.add_parser("list", help="list nodes")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_nodes_list)
    rm = nodes_sub.add_parser("remove", help="remove a node")
    rm.add_argument("name")
    rm.set_defaults(func=_nodes_remove)

    echo = sub.add_parser("echo", help="verify a node (C-ECHO; DICOMweb: a one-study QIDO-RS)")
    echo.add_argument("node")
    echo.set_defaults(func=_echo)

    find = sub.add_parser("find", help="query a node (C-FIND or QIDO-RS)")
    find.add_argument("node")
    find.add_argument("--level", choices=LEVELS, default="study")
    find.add_argument("--patient-name", help="wildcards * and ? allowed, e.g. 'DOE^*'")
    find.add_argument("--patient-id")
    find.add_argument("--accession")
    find.add_argument("--date-from", help="study date from (2024-01-31 or 20240131)")
    find.add_argument("--date-to", help="study date to")
    find.add_argument("--modality")
    find.add_argument("--study-uid")
    find.add_argument("--series-uid")
    find.add_argument("--json", action="store_true", help="print matches as a JSON list")
    find.set_defaults(func=_find)

    ret = sub.add_parser("retrieve", help="retrieve a study or series (C-MOVE, C-GET or WADO-RS)")
    ret.add_argument("node")
    ret.add_argument("--study", required=True, help="Study Instance UID")
    ret.add_argument("--series", help="Series Instance UID (default: the whole study)")
    ret.add_argument("--method", choices=RETRIEVE_METHODS, help="default: the node's method")
    ret.add_argument(
        "--archive", type=Path, help="archive directory for C-GET and WADO-RS (default: the workstation's)"
    )
    ret.add_argument(
        "--destination", help="C-MOVE destination AE title (default: the node's calling AE title)"
    )
    ret.set_defaults(func=_retrieve)

    send = sub.add_parser("send", help="send files or folders (C-STORE or STOW-RS)")
    send.add_argument("node")
    send.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    send.set_defaults(func=_send)


class UsageError(ValueError):
    """Bad command-line input that argparse cannot catch (e.g. a missing file)."""


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _guarded(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the known failures into a one-line message and an exit status."""

    def run(args: argparse.Namespace) -> int:
        from dicom_net.scu_assoc import PacsError

        try:
            return action(args)
        except (UnknownNodeError, PacsNodeError, QueryError, UsageError) as exc:
            _error(str(exc))
            return EXIT_USAGE
        except PacsError as exc:
            _error(str(exc))
            return EXIT_FAILED

    run.__doc__ = action.__doc__
    return run


def _node(name: str) -> AnyNode:
    return PacsNodes().get(name)


def _read_password() -> str:
    """One line from stdin (a terminal gets a prompt without echo)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password: ")
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _dicomweb_node(args: argparse.Namespace) -> DicomWebNode:
    dimse = [f"--{k}" for k in ("aet", "host", "port", "tls_cert", "tls_key") if getattr(args, k)]
    if dimse or args.method != "move" or args.calling_aet != DEFAULT_CALLING_AET:
        raise UsageError(f"a DICOMweb node takes none of {', '.join(dimse) or '--method/--calling-aet'}")
    if args.password_stdin and not args.user:
        raise UsageError("--password-stdin needs --user")
    if args.user and not args.password_stdin:
        raise UsageError("--user needs --password-stdin (a password is never given on the command line)")
    node = DicomWebNode(
        name=args.name,
        url=args.dicomweb,
        user=args.user,
        token_file=args.token_file,
        tls_ca=args.tls_ca,
        timeout_s=args.timeout,
    )
    if args.password_stdin:
        password = _read_password()
        if not password:
            raise UsageError("the password read from stdin is empty")
        node = replace(node, password=password)
    return node


@_guarded
def _nodes_add(args: argparse.Namespace) -> int:
    if args.dicomweb:
        web = _dicomweb_node(args)
        PacsNodes().add(web, replace=args.replace)
        print(f"saved node {web.name}: {web.describe()}")
        return EXIT_OK
    web_only = [
        f"--{k.replace('_', '-')}" for k in ("user", "password_stdin", "token_file") if getattr(args, k)
    ]
    if web_only:
        raise UsageError(f"{', '.join(web_only)} apply to a DICOMweb node (--dicomweb URL)")
    missing = [f"--{k}" for k in ("aet", "host", "port") if getattr(args, k) is None]
    if missing:
        raise UsageError(f"a DICOM node needs {', '.join(missing)} (or give --dicomweb URL)")
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        if not args.tls_ca:
            raise PacsNodeError(
                "--tls-cert/--tls-key need --tls-ca (the CA that signed the PACS certificate)"
            )
        tls = TlsSettings(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    node = PacsNode(
        name=args.name,
        aet=args.aet,
        host=args.host,
        port=args.port,
        calling_aet=args.calling_aet,
        retrieve_method=args.method,
        tls=tls,
        timeout_s=args.timeout,
    )
    PacsNodes().add(node, replace=args.replace)
    print(
        f"saved node {node.name}: {node.aet}@{node.host}:{node.port} (we are {node.calling_aet}, "
        f"retrieve by C-{node.retrieve_method.upper()}{', TLS' if tls else ''})"
    )
    return EXIT_OK


@_guarded
def _nodes_list(args: argparse.Namespace) -> int:
    nodes = PacsNodes().load()
    if args.json:
        print(json.dumps([n.to_json() for n in nodes.values()], indent=2))
        return EXIT_OK
    if not nodes:
        print(
            "no PACS nodes configured (add one with: hulu-workstation pacs nodes add NAME --aet ... "
            "--host ... --port ...)"
        )
    for n in nodes.values():
        if isinstance(n, DicomWebNode):
            print(f"{n.name}\t{n.describe()}")
            continue
        print(
            f"{n.name}\t{n.aet}@{n.host}:{n.port}\tcalling {n.calling_aet}\t{n.retrieve_method}"
            f"{chr(9) + 'TLS' if n.tls else ''}"
        )
    return EXIT_OK


@_guarded
def _nodes_remove(args: argparse.Namespace) -> int:
    PacsNodes().remove(args.name)
    print(f"removed node {args.name}")
    return EXIT_OK


@_guarded
def _echo(args: argparse.Namespace) -> int:
    from dicom_net.scu import echo

    node = _node(args.node)
    result = echo(node)
    if isinstance(node, DicomWebNode):
        print(f"DICOMweb {args.node}: QIDO-RS answered in {result.seconds * 1000:.0f} ms")
    else:
        print(f"C-ECHO {args.node}: status 0x{result.status:04X} in {result.seconds * 1000:.0f} ms")
    return EXIT_OK if result.ok else EXIT_FAILED


@_guarded
def _find(args: argparse.Namespace) -> int:
    from dicom_net.scu import find

    keys = {
        k: getattr(args, k)
        for k in (
            "patient_name",
            "patient_id",
            "accession",
            "date_from",
            "date_to",
            "modality",
            "study_uid",
            "series_uid",
        )
    }
    matches = find(_node(args.node), args.level, **keys)
    if args.json:
        print(json.dumps(matches, indent=2, ensure_ascii=False))
    else:
        _print_table(matches, TABLE_COLUMNS[args.level])
        print(f"{len(matches)} match(es)", file=sys.stderr)
    return EXIT_OK


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "\\".join(map(str, value))
    return "" if value is None else str(value)


def _print_table(rows: list[dict], columns: tuple[str, ...]) -> None:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


class _ProgressLine:
    """``done/total`` on one terminal line (new lines every 10 % when stderr is not a terminal)."""

    def __init__(self, verb: str) -> None:
        self.verb, self.tty, self.last_decile = verb, sys.stderr.isatty(), -1

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            print(f"\r{self.verb} {done}/{total}", end="", file=sys.stderr, flush=True)
            return
        decile = 10 * done // total if total else 0
        if decile != self.last_decile:
            self.last_decile = decile
            print(f"{self.verb} {done}/{total}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _run_cancellable(work: Callable[[threading.Event], Any]) -> Any:
    """Run ``work(cancel)`` in a thread; Ctrl-C sets ``cancel`` and waits for it to wind down."""
    cancel = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(cancel)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="pacs-cli")
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            print("\ncancelling ...", file=sys.stderr)
            cancel.set()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@_guarded
def _retrieve(args: argparse.Namespace) -> int:
    from dicom_net.scu import retrieve

    node = _node(args.node)
    if isinstance(node, DicomWebNode) and (args.method or args.destination):
        raise UsageError(f"node {node.name} is a DICOMweb node: it retrieves by WADO-RS into the archive")
    method = args.method or node.retrieve_method
    archive = None
    if method in ("get", "wado-rs"):
        from dicom_net.archive import Archive
        from dicom_net.paths import default_archive_dir

        archive = Archive(args.archive or default_archive_dir())
    line = _ProgressLine("retrieved")
    result = _run_cancellable(
        lambda cancel: retrieve(
            node,
            args.study,
            args.series,
            method=method,
            archive=archive,
            move_destination=args.destination,
            progress=line,
            cancel=cancel,
        )
    )
    line.finish()
    where = f"into {archive.root}" if archive is not None else f"to {args.destination or node.calling_aet}"
    verb = "WADO-RS" if method == "wado-rs" else f"C-{method.upper()}"
    print(
        f"{verb} {'cancelled' if result.cancelled else 'done'}: {result.completed} completed, "
        f"{result.failed} failed, {result.warning} warning, {len(result.stored)} stored {where} "
        f"in {result.seconds:.2f} s"
    )
    if result.store_failures:
        _error(f"{len(result.store_failures)} received object(s) refused by the archive (see log)")
    return EXIT_OK if result.ok else EXIT_FAILED


@_guarded
def _send(args: argparse.Namespace) -> int:
    from dicom_net.scu import send

    node = _node(args.node)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"not found: {', '.join(missing)}")
    line = _ProgressLine("sent")
    result = _run_cancellable(lambda cancel: send(node, args.paths, progress=line, cancel=cancel))
    line.finish()
    for failure in result.failed:
        status = f"0x{failure.status:04X}" if failure.status is not None else "not sent"
        _error(f"{failure.item}: {status} {failure.message}".rstrip())
    verb = "STOW-RS" if isinstance(node, DicomWebNode) else "C-STORE"
    print(
        f"{verb} to {node.name}: {result.sent} of {len(result.statuses)} sent in {result.seconds:.2f} s"
        f"{' (cancelled)' if result.cancelled else ''}"
    )
    return EXIT_OK if result.ok else EXIT_FAILED
