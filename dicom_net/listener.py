"""The C-ECHO/C-STORE listener: receives studies into the archive, safely and fast.

Every accepted object is validated (:mod:`dicom_net.validation`) and stored byte for byte as it
arrived; a failure gets a DICOM failure status and leaves nothing behind. The received dataset
is kept in memory until it is complete, so an aborted association never leaves a partial file.

pynetdicom negotiates each association (called AE title, allow-list, TLS, presentation
contexts in the sender's preferred transfer syntax); the data phase is then served from the
socket thread (:mod:`dicom_net.listener_dataphase`), and the archive indexes received objects
in batches (:meth:`Archive.store_bytes` with ``defer_index``). With the default durability an
object is fsynced in its final place before its success status is sent.

:func:`start_listener` runs it in the calling process (threads); :func:`run_listener_forever`
is what ``hulu-workstation receive`` runs: its own process (or several sharing the port with
``SO_REUSEPORT``), a status file for the GUI, and a clean exit on SIGTERM.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from dicom_net.archive import DEFAULT_MIN_FREE_BYTES, Archive, StorageFull
from dicom_net.lifeline import die_with_parent, parent_is
from dicom_net.listener_allow import AllowList
from dicom_net.listener_dataphase import error_comment
from dicom_net.listener_status import STATUS_FILE_NAME, ListenerStats, StatusWriter, record_start_failure
from dicom_net.listener_transport import ListenerAE, ListenerServer, SharedPortListenerServer
from dicom_net.part10 import file_meta_header
from dicom_net.sockets import PortInUse, port_holders, server_tls_context
from dicom_net.validation import InvalidDataset, inspect_part10

log = logging.getLogger(__name__)
_T = TypeVar("_T")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
DEFAULT_AET = "HULUWS"
DEFAULT_PORT = 11112
DEFAULT_MAX_PDU = 256 * 1024
MAX_DATASET_BYTES = 4 * 1024**3  # largest single received dataset by default (held in memory)


def default_max_dataset_bytes() -> int:
    """4 GiB, or a quarter of the physical memory when that is less."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return MAX_DATASET_BYTES
    return max(64 * 1024 * 1024, min(MAX_DATASET_BYTES, ram // 4))


@dataclass
class ListenerConfig:
    """How the listener runs. ``allow`` entries are ``AET`` or ``AET@HOST``; empty allows all."""

    aet: str = DEFAULT_AET
    port: int = DEFAULT_PORT
    archive_dir: Path = field(default_factory=lambda: _default_archive_dir())
    host: str = "127.0.0.1"
    allow: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # TLS without a CA encrypts but lets any client in: it must be chosen explicitly (as Orthanc's
    # DicomTlsRemoteCertificateRequired=false); otherwise a certificate without a CA is refused
    tls_no_client_auth: bool = False
    max_associations: int = 16
    max_pdu: int = DEFAULT_MAX_PDU
    acse_timeout: float = 30.0  # ARTIM: the whole A-ASSOCIATE-RQ must arrive within this
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0  # idle limit, and the most one PDU may take once it began
    workers: int = 1
    status_interval_s: float = 0.5
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES  # refuse objects (0xA700) before the disk is full
    # 'fsync': answer success once the object is fsynced in its final place (default).
    # 'batch': fsync in the ~50 ms index batch instead; a power cut in that window can lose
    # acknowledged objects (as with DCMTK storescp, which never fsyncs); a crash cannot.
    durability: str = "fsync"
    fast_data_phase: bool = True  # serve C-STORE/C-ECHO from the socket thread (see listener_dataphase)
    # A dataset is held in memory until complete: a larger one aborts its association (logged).
    # Enforced by the fast data phase (pynetdicom's own, fast_data_phase=False, has no cap).
    max_dataset_bytes: int = field(default_factory=default_max_dataset_bytes)

    def __post_init__(self) -> None:
        self.archive_dir = Path(self.archive_dir)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key")
        if self.tls_cert is not None and self.tls_ca is None and not self.tls_no_client_auth:
            raise ValueError(
                "TLS without a CA would accept any client: give --tls-ca (clients must present a "
                "certificate it signed) or --tls-no-client-auth (encrypt, but authenticate no client)"
            )
        if self.tls_no_client_auth and (self.tls_cert is None or self.tls_ca is not None):
            raise ValueError("--tls-no-client-auth is for TLS with a certificate and no CA")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.durability not in ("fsync", "batch"):
            raise ValueError("durability must be 'fsync' or 'batch'")
        if self.workers > 1 and self.port == 0:
            raise ValueError("several workers need a fixed port to share")
        if self.max_dataset_bytes < 1:
            raise ValueError("max_dataset_bytes must be positive")
        if self.acse_timeout <= 0 or self.network_timeout <= 0:
            raise ValueError("timeouts must be positive")


def _default_archive_dir() -> Path:
    from dicom_net.paths import default_archive_dir

    return default_archive_dir()


class StoreHandler:
    """Handles C-STORE requests: validate, store, answer with the right status, count."""

    def __init__(self, archive: Archive, stats: ListenerStats, sync_before_return: bool = True) -> None:
        self.archive = archive
        self.stats = stats
        self.sync_before_return = sync_before_return

    def __call__(self, event: Event) -> Dataset:
        """pynetdicom's EVT_C_STORE handler."""
        request = event.request
        status, comment = self.store(
            str(request.AffectedSOPClassUID or ""),
            str(request.AffectedSOPInstanceUID or ""),
            str(event.context.transfer_syntax),
            [event.encoded_dataset(include_meta=False)],
            str(event.assoc.requestor.ae_title or ""),
        )
        response = Dataset()
        response.Status = status
        if comment:
            response.ErrorComment = error_comment(comment).decode("ascii").rstrip()
        return response

    def store(
        self,
        sop_class: str,
        sop_instance: str,
        transfer_syntax: str,
        dataset: Sequence[bytes | bytearray | memoryview],
        calling: str,
    ) -> tuple[int, str]:
        """Validate and store one received dataset (given as its fragments).

        Returns the C-STORE status and, for a failure, why (the response's Error Comment).
        """
        try:
            data = b"".join((file_meta_header(sop_class, sop_instance, transfer_syntax, calling), *dataset))
            info = inspect_part10(data, expected_sop_class=sop_class, expected_sop_instance=sop_instance)
            outcome = self.archive.store_bytes(
                data,
                info=info,
                source=calling.strip(),
                defer_index=True,
                sync_before_return=self.sync_before_return,
            )
        except InvalidDataset as exc:
            return self._fail(exc.status, sop_instance, str(exc))
        except StorageFull as exc:
            return self._fail(STATUS_OUT_OF_RESOURCES, sop_instance, str(exc))
        except OSError as exc:
            return self._fail(
                STATUS_OUT_OF_RESOURCES, sop_instance, f"storing failed: {type(exc).__name__} {exc.errno}"
            )
        except Exception as exc:  # never let one object kill the association
            log.exception("unexpected error storing %s", sop_instance)
            self.stats.add("errors")
            return self._fail(STATUS_CANNOT_UNDERSTAND, sop_instance, f"storing failed: {type(exc).__name__}")
        self.stats.add({"stored": "stored", "duplicate": "duplicates", "version": "versions"}[outcome.status])
        self.stats.set_last_study(outcome.study_uid)
        return STATUS_SUCCESS, ""

    def echo(self) -> int:
        self.stats.add("echoes")
        return STATUS_SUCCESS

    def _fail(self, status: int, sop_instance: str, reason: str) -> tuple[int, str]:
        message = f"refused {sop_instance}: {reason}"
        log.warning("%s -> status 0x%04X", message, status)
        self.stats.add("failed")
        self.stats.set_last_error(message)
        return status, reason


def _prefer_requestor_syntaxes(event: Event) -> None:
    """Accept the transfer syntax the sender lists first, instead of pynetdicom's own order.

    Senders put the syntax the data already has first; taking it means no transcoding on their
    side (a JPEG-baseline cine cannot be sent at all if we insist on uncompressed) and the bytes
    arrive as the modality made them.
    """
    proposed: dict[str, list[str]] = {}
    for context in event.assoc.requestor.primitive.presentation_context_definition_list:
        order = proposed.setdefault(str(context.abstract_syntax), [])
        order.extend(str(ts) for ts in context.transfer_syntax if str(ts) not in order)
    tailored = []
    for context in event.assoc.acceptor.supported_contexts:  # shared by all associations: read only
        order = proposed.get(str(context.abstract_syntax))
        if order:
            ours = {str(ts) for ts in context.transfer_syntax}
            accepted = [ts for ts in order if ts in ours]
            if accepted:
                tailored.append(build_context(context.abstract_syntax, accepted))
    event.assoc.acceptor.supported_contexts = tailored


def _on_requested(event: Event, allow: AllowList, stats: ListenerStats) -> None:
    """Reject associations from calling AE titles (and hosts) not on the allow-list."""
    _prefer_requestor_syntaxes(event)
    requestor = event.assoc.requestor
    calling = str(requestor.primitive.calling_ae_title or "").strip()
    host = requestor.address
    if not allow.allows(calling, host):
        log.warning("rejected association from AE %s at %s: not on the allow-list", calling, host)
        stats.add("rejected")
        event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
        event.assoc.kill()  # returns once the A-ASSOCIATE-RJ is out; the caller then closes the socket


def _on_established(event: Event, stats: ListenerStats) -> None:
    stats.add("associations")


def _on_rejected(event: Event, stats: ListenerStats) -> None:
    stats.add("rejected")


def build_ae(config: ListenerConfig) -> AE:
    """An AE accepting Verification and every storage SOP class in every transfer syntax."""
    _config.LOG_HANDLER_LEVEL = "none"  # no per-PDU logging work; pynetdicom's INFO lines stay off too
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    ae = ListenerAE(ae_title=config.aet)
    ae.require_called_aet = True
    ae.maximum_associations = config.max_associations
    ae.maximum_pdu_size = config.max_pdu
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    ae.network_timeout = config.network_timeout
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    return ae


class ListenerHandle:
    """A running in-process listener: ``.port``, ``.stats`` and ``.stop()``."""

    def __init__(
        self, server: ListenerServer, archive: Archive, stats: ListenerStats, status: StatusWriter | None
    ) -> None:
        self.server = server
        self.archive = archive
        self.stats = stats
        self._status = status
        self.port: int = server.server_address[1]
        self._stopped = False

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let running associations finish for up to ``grace_s``, then abort them."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stop(grace_s)
        if self._status is not None:
            self._status.stop()
        self.archive.close()

    def __enter__(self) -> ListenerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(config: ListenerConfig, stats: ListenerStats, reuse_port: bool) -> tuple[ListenerServer, Archive]:
    archive = Archive(config.archive_dir, min_free_bytes=config.min_free_bytes)
    allow = AllowList(config.allow)
    ae = build_ae(config)
    ssl_context = (
        server_tls_context(config.tls_cert, config.tls_key, config.tls_ca)
        if config.tls_cert is not None and config.tls_key is not None
        else None
    )
    store_handler = StoreHandler(archive, stats, sync_before_return=config.durability == "fsync")
    handlers: list[Any] = [
        (evt.EVT_C_STORE, store_handler),
        (evt.EVT_C_ECHO, lambda event: store_handler.echo()),
        (evt.EVT_REQUESTED, _on_requested, [allow, stats]),
        (evt.EVT_ACCEPTED, _on_established, [stats]),
        (evt.EVT_REJECTED, _on_rejected, [stats]),
    ]
    try:
        server = ae.make_server(
            (config.host, config.port),
            ssl_context=ssl_context,
            evt_handlers=handlers,
            server_class=SharedPortListenerServer if reuse_port else ListenerServer,
        )
    except OSError as exc:
        archive.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(config.host, config.port) from exc
        raise
    server.data_phase_target = store_handler if config.fast_data_phase else None
    server.max_dataset_bytes = config.max_dataset_bytes
    ae._servers.append(server)  # pynetdicom's shutdown() removes it from there
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="listener-accept", daemon=True
    ).start()
    return server, archive


def start_listener(config: ListenerConfig, *, write_status: bool = True) -> ListenerHandle:
    """Start the listener in this process (threads); ``config.port = 0`` picks a free port."""
    stats = ListenerStats()
    server, archive = _serve(config, stats, reuse_port=False)
    status = None
    if write_status:
        port = server.server_address[1]
        status = StatusWriter(
            config.archive_dir / STATUS_FILE_NAME, stats, _identity(config, port), config.status_interval_s
        )
        status.start()
    log.info(
        "listening as %s on %s:%d (archive %s)",
        config.aet,
        config.host,
        server.server_address[1],
        config.archive_dir,
    )
    return ListenerHandle(server, archive, stats, status)


def _identity(config: ListenerConfig, port: int) -> dict[str, Any]:
    return {
        "aet": config.aet,
        "host": config.host,
        "port": port,
        "workers": config.workers,
        "durability": config.durability,
        "tls": config.tls_cert is not None,
        "tls_client_auth": config.tls_ca is not None,
        "archive": str(config.archive_dir),
    }


def _wait_for_sigterm(tick: Callable[[], bool] | None = None) -> None:
    """Block until SIGTERM/SIGINT, or until ``tick()`` (called twice a second) returns False."""
    stop = threading.Event()

    def _handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop.wait(0.5):
        if tick is not None and not tick():
            return


class _Supervisor:
    """Keeps ``config.workers`` receiver processes running; gives up if they keep dying at once."""

    def __init__(self, config: ListenerConfig, stats: ListenerStats) -> None:
        from dicom_net.listener_status import _mp

        self._mp = _mp
        self.config = config
        self.stats = stats
        self.early_deaths = 0
        self.workers = [self._spawn(i) for i in range(config.workers)]

    def _spawn(self, index: int) -> tuple[Any, float]:
        process = self._mp.Process(
            target=_worker_main, args=(self.config, self.stats, os.getpid()), name=f"receiver-{index}"
        )
        process.start()
        return process, time.monotonic()

    def check(self) -> bool:
        for index, (process, started) in enumerate(self.workers):
            if process.is_alive():
                continue
            if time.monotonic() - started < 5.0:
                self.early_deaths += 1
            log.error("receiver process %d exited with code %s; restarting it", process.pid, process.exitcode)
            self.stats.add("errors")
            if self.early_deaths > 3 * self.config.workers:
                log.error("receiver processes keep failing at start (port in use?); giving up")
                return False
            self.workers[index] = self._spawn(index)
        return True

    def stop(self) -> None:
        for process, _ in self.workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in self.workers:
            process.join(15.0)
            if process.is_alive():
                process.kill()
                process.join()


def _worker_main(config: ListenerConfig, stats: ListenerStats, parent_pid: int) -> None:
    """One receiver process sharing the port; exits cleanly on SIGTERM or when its parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    if not die_with_parent(parent_pid):
        return
    server, archive = _serve(config, stats, reuse_port=True)
    try:
        _wait_for_sigterm(lambda: parent_is(parent_pid))
    finally:
        server.stop(10.0)
        archive.close()


def _starting(config: ListenerConfig, start: Callable[[], _T]) -> _T:
    """Run a start-up step; an OSError (port in use, unreadable TLS files) is also recorded in the
    status file, where the GUI shows it."""
    try:
        return start()
    except OSError as exc:
        record_start_failure(config.archive_dir, _identity(config, config.port), str(exc))
        raise


def _check_port_free(config: ListenerConfig) -> None:
    """Workers bind with ``SO_REUSEPORT``, which would share the port with anyone else doing so
    (another listener, a killed supervisor's workers): refuse a port that anything listens on."""
    if port_holders(config.host, config.port):
        raise PortInUse(config.host, config.port)


def run_listener_forever(config: ListenerConfig) -> int:
    """Receive until SIGTERM/SIGINT: one process, or ``config.workers`` processes sharing the port."""
    config.archive_dir.mkdir(parents=True, exist_ok=True)
    with Archive(config.archive_dir) as archive:  # adopt files a killed writer stored but did not index
        archive.adopt_unindexed()
    if config.workers == 1:
        handle = _starting(config, lambda: start_listener(config))
        try:
            _wait_for_sigterm()
        finally:
            handle.stop()
        log.info("listener stopped")
        return 0
    _starting(config, lambda: _check_port_free(config))
    stats = ListenerStats()
    supervisor = _Supervisor(config, stats)
    status = StatusWriter(
        config.archive_dir / STATUS_FILE_NAME, stats, _identity(config, config.port), config.status_interval_s
    )
    status.start()
    log.info(
        "listening as %s on %s:%d with %d receiver processes",
        config.aet,
        config.host,
        config.port,
        config.workers,
    )
    healthy = True
    try:
        _wait_for_sigterm(supervisor.check)
        healthy = supervisor.check()
    finally:
        supervisor.stop()
        status.stop()
    log.info("listener stopped")
    return 0 if healthy else 1
