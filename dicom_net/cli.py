"""Sub-commands ``receive``, ``import`` and ``archive`` of ``hulu-workstation``.

These never load Qt or torch: the listener runs as its own light process.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from dicom_net.paths import default_archive_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    from dicom_net.listener import DEFAULT_AET, DEFAULT_MAX_PDU, DEFAULT_PORT

    receive = subparsers.add_parser(
        "receive",
        help="run the DICOM listener (C-ECHO, C-STORE) into the archive",
        description="Receive studies by DICOM C-STORE until SIGTERM/Ctrl-C. Writes "
        "<archive>/listener-status.json for the GUI.",
    )
    receive.add_argument("--aet", default=DEFAULT_AET, help=f"our AE title (default {DEFAULT_AET})")
    receive.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    receive.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for the hospital network)",
    )
    receive.add_argument(
        "--archive", type=Path, default=None, help="archive folder (default: in the data dir)"
    )
    receive.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="AET[@HOST]",
        help="accept only these calling AE titles (optionally only from HOST); repeatable",
    )
    receive.add_argument("--tls-cert", type=Path, help="our certificate (PEM): enables DICOM TLS")
    receive.add_argument("--tls-key", type=Path, help="our private key (PEM)")
    receive.add_argument("--tls-ca", type=Path, help="CA (PEM) that must have signed the peers' certificates")
    receive.add_argument(
        "--tls-no-client-auth",
        action="store_true",
        help="TLS without --tls-ca: encrypt, but accept any client (no client certificate checked)",
    )
    receive.add_argument(
        "--workers", type=int, default=1, help="receiver processes sharing the port (SO_REUSEPORT; default 1)"
    )
    receive.add_argument(
        "--durability",
        choices=["fsync", "batch"],
        default="fsync",
        help="fsync: answer success only once the object is on disk (default); batch: fsync "
        "within ~50 ms after answering (faster; a power cut may lose the last objects)",
    )
    receive.add_argument("--max-associations", type=int, default=16)
    receive.add_argument(
        "--acse-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a connection must deliver its whole association request within this time, or it is "
        "closed (DICOM's ARTIM timer, as storescp's --acse-timeout; default 30)",
    )
    receive.add_argument("--max-pdu", type=int, default=DEFAULT_MAX_PDU, help="largest PDU we accept (bytes)")
    receive.add_argument(
        "--max-dataset-mb",
        type=int,
        default=None,
        help="largest single object received, held in memory until complete; a larger one aborts "
        "its association (default: 4096, or a quarter of the RAM when less)",
    )
    receive.add_argument(
        "--stop",
        action="store_true",
        help="stop the listener that is receiving into --archive (it finishes running associations)",
    )
    receive.set_defaults(func=_receive)

    imp = subparsers.add_parser(
        "import",
        help="import DICOM files, folders, DICOMDIRs or zip files",
        description="Import into the archive, byte for byte, with a progress bar.",
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    imp.add_argument("--archive", type=Path, default=None, help="archive folder (default: in the data dir)")
    imp.set_defaults(func=_import)

    arc = subparsers.add_parser(
        "archive",
        help="list the archive's studies or rebuild its index",
        description="`archive list [--json]` prints the studies; "
        "`archive --reindex` rebuilds the index from the files.",
    )
    arc.add_argument("action", nargs="?", choices=["list"], default=None)
    arc.add_argument("--json", action="store_true", help="machine-readable output")
    arc.add_argument("--reindex", action="store_true", help="bring the index in line with the files")
    arc.add_argument("--archive", type=Path, default=None, help="archive folder (default: in the data dir)")
    arc.set_defaults(func=_archive)


OPEN_TLS_WARNING = (
    "WARNING: TLS without client authentication (--tls-no-client-auth): traffic is encrypted, but ANY "
    "client that can reach the port may associate; only the AE title allow-list (--allow) restricts "
    "senders. Give --tls-ca to require client certificates signed by your CA."
)


def _archive_dir(args: argparse.Namespace) -> Path:
    return args.archive if args.archive is not None else default_archive_dir()


def _receive(args: argparse.Namespace) -> int:
    from dicom_net.listener import ListenerConfig, run_listener_forever
    from dicom_net.listener_status import record_start_failure, stop_running_listener

    if args.stop:
        pid = stop_running_listener(_archive_dir(args))
        print(
            f"stopped the listener (pid {pid})"
            if pid
            else f"no listener is receiving into {_archive_dir(args)}"
        )
        return 0 if pid else 1

    try:
        config = ListenerConfig(
            aet=args.aet,
            port=args.port,
            host=args.host,
            archive_dir=_archive_dir(args),
            allow=args.allow,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            tls_no_client_auth=args.tls_no_client_auth,
            workers=args.workers,
            max_associations=args.max_associations,
            acse_timeout=args.acse_timeout,
            max_pdu=args.max_pdu,
            durability=args.durability,
            **(
                {"max_dataset_bytes": args.max_dataset_mb * 1024 * 1024}
                if args.max_dataset_mb is not None
                else {}
            ),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        record_start_failure(_archive_dir(args), {"aet": args.aet, "port": args.port}, str(exc))
        return 2
    if config.tls_no_client_auth:
        print(OPEN_TLS_WARNING, file=sys.stderr, flush=True)
    try:
        return run_listener_forever(config)
    except OSError as exc:  # port in use, archive folder not writable, bad TLS files
        print(f"error: cannot start the listener: {exc}", file=sys.stderr)
        return 1


def _import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dicom_net.archive import Archive
    from dicom_net.importer import import_paths

    bar = tqdm(total=0, unit="file", desc="import", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    try:
        with Archive(_archive_dir(args)) as archive:
            report = import_paths(archive, args.paths, progress=progress)
    except FileNotFoundError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    print(
        f"{report.stored} stored"
        f"{f' ({report.raw_datasets} raw datasets given a Part-10 header)' if report.raw_datasets else ''}, "
        f"{report.duplicates} duplicates, {report.versions} new versions, "
        f"{report.skipped} skipped (not DICOM), {len(report.failed)} failed, "
        f"{len(report.study_uids)} studies"
    )
    for label, reason in report.failed:
        print(f"failed: {label}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _archive(args: argparse.Namespace) -> int:
    from dicom_net.archive import Archive

    with Archive(_archive_dir(args)) as archive:
        if args.reindex:
            total = archive.reindex()
            print(f"index rebuilt: {total} instances")
            if args.action is None:
                return 0
        studies = archive.studies()
        if args.json:
            print(json.dumps([asdict(s) for s in studies], indent=1, default=str))
            return 0
        if not studies:
            print("archive is empty")
            return 0
        print(f"{'date':8}  {'patient':24} {'id':12} {'modalities':10} {'ser':>3} {'img':>5}  description")
        for s in studies:
            print(
                f"{s.study_date:8}  {s.patient_name[:24]:24} {s.patient_id[:12]:12} "
                f"{','.join(s.modalities)[:10]:10} {s.series_count:>3} {s.instance_count:>5}  "
                f"{s.description[:40]}"
            )
    return 0
