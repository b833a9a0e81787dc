"""Talking to a PACS as a client (SCU): verify, query, retrieve and send.

    echo(node) -> EchoResult
    find(node, level, patient_name=..., study_uid=..., ...) -> list[dict]
    retrieve(node, study_uid, series_uid=None, method="move"|"get", archive=..., progress=..., cancel=...)
    send(node, paths_or_datasets, progress=..., cancel=...) -> SendResult

A :class:`~dicom_net.pacs_nodes.DicomWebNode` is handed to :mod:`dicom_net.dicomweb` (QIDO-RS,
WADO-RS, STOW-RS) with the same arguments and results, so callers need not know a node's kind.

Every function raises a :class:`~dicom_net.scu_assoc.PacsError` subclass with the node and the
reason when the PACS cannot be reached, refuses us, times out or aborts. ``progress(done, total)``
is called from the calling thread (``total`` may grow while a retrieve discovers its size);
``cancel`` is a :class:`threading.Event` another thread may set. Logs carry UIDs and counts only.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import code_to_category

from dicom_net.pacs_nodes import AnyNode, DicomWebNode, PacsNode
from dicom_net.part10 import file_meta_header
from dicom_net.scu_assoc import (
    AssociationRejected,
    PacsAborted,
    PacsConnectionError,
    PacsError,
    PacsOperationFailed,
    PacsTimeout,
    associate,
    describe,
    raise_for_lost_association,
)
from dicom_net.scu_contexts import storage_contexts_for_get, storage_contexts_for_send
from dicom_net.scu_find import answer_to_dict, build_identifier, query_model
from hulu_common.files import expand_paths

__all__ = [
    "AssociationRejected",
    "EchoResult",
    "InstanceStatus",
    "PacsAborted",
    "PacsConnectionError",
    "PacsError",
    "PacsOperationFailed",
    "PacsTimeout",
    "RetrieveResult",
    "SendResult",
    "echo",
    "find",
    "retrieve",
    "send",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
CANCEL_GRACE_S = 2.0  # after C-CANCEL, how long the PACS may take to stop before we abort


class StoresBytes(Protocol):
    """What C-GET needs of the archive: store one Part-10 object given as bytes.

    An archive that also takes ``defer_index``/``sync_before_return`` and has ``flush()`` (our
    :class:`~dicom_net.archive.Archive`) is written to in batches: see :func:`retrieve`.
    """

    def store_bytes(
        self,
        part10: bytes,
        *,
        source: str = ...,
        expected_sop_class: str | None = ...,
        expected_sop_instance: str | None = ...,
    ) -> Any: ...


def stores_in_batches(archive: StoresBytes) -> bool:
    """Whether ``archive`` can acknowledge before fsync and make objects durable in a ``flush()``."""
    if not callable(getattr(archive, "flush", None)):
        return False
    try:
        params = inspect.signature(archive.store_bytes).parameters
    except (TypeError, ValueError):
        return False
    return "defer_index" in params and "sync_before_return" in params


class HasAeTitle(Protocol):
    aet: str


# ------------------------------------------------------------------------------------------------
# C-ECHO
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoResult:
    status: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 0x0000

    def __bool__(self) -> bool:
        return self.ok


def echo(node: AnyNode) -> EchoResult:
    """Verify the node (C-ECHO). Raises PacsError when no association is possible."""
    if isinstance(node, DicomWebNode):
        from dicom_net import dicomweb

        return dicomweb.echo(node)
    start = time.monotonic()
    with associate(node, [build_context(Verification)]) as assoc:
        rsp = assoc.send_c_echo()
        if "Status" not in rsp:
            raise_for_lost_association(node, "C-ECHO", time.monotonic() - start)
    return EchoResult(status=int(rsp.Status), seconds=time.monotonic() - start)


# ------------------------------------------------------------------------------------------------
# C-FIND
# ------------------------------------------------------------------------------------------------


def find(
    node: AnyNode, level: str, *, cancel: threading.Event | None = None, **keys: str | None
) -> list[dict]:
    """Query ``node`` at ``level`` (patient|study|series|image); returns one dict per match.

    Keys: patient_name (wildcards * and ? allowed), patient_id, accession, date_from, date_to,
    modality, study_uid, series_uid, sop_uid, each valid at the levels the standard allows.
    """
    if isinstance(node, DicomWebNode):
        from dicom_net import dicomweb

        return dicomweb.find(node, level, cancel=cancel, **keys)
    identifier = build_identifier(level, keys)
    model = query_model(level)
    matches: list[dict] = []
    last = time.monotonic()
    cancel_sent = False
    with associate(node, [build_context(model)]) as assoc:
        responses = assoc.send_c_find(identifier, model, msg_id=1)
        for status, answer in responses:
            if "Status" not in status:
                raise_for_lost_association(node, f"{level}-level C-FIND", time.monotonic() - last)
            last = time.monotonic()
            category = code_to_category(status.Status)
            if category == "Pending":
                if answer is not None:
                    matches.append(answer_to_dict(answer, level))
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    assoc.send_c_cancel(1, query_model=model)
                    cancel_sent = True
            elif category in ("Success", "Cancel"):
                break
            else:
                raise PacsOperationFailed(
                    f"{describe(node)} refused the {level}-level C-FIND: status 0x{status.Status:04X}"
                    f"{_error_comment(status)}",
                    int(status.Status),
                )
    log.info("C-FIND %s level on %s: %d matches", level, node.name, len(matches))
    return matches


def _error_comment(status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f" ({comment})" if comment else ""


# ------------------------------------------------------------------------------------------------
# C-MOVE / C-GET
# ------------------------------------------------------------------------------------------------


@dataclass
class RetrieveResult:
    """What a retrieve achieved. ``stored`` lists SOP Instance UIDs we stored (C-GET only)."""

    method: str
    status: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    cancelled: bool = False
    stored: list[str] = field(default_factory=list)
    store_failures: list[str] = field(default_factory=list)  # received but refused by our archive
    failed_sop_uids: list[str] = field(default_factory=list)  # reported failed by the PACS
    not_yet_durable: bool = False  # C-GET: the archive could not fsync/index everything in time
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.cancelled
            and self.failed == 0
            and not self.store_failures
            and not self.not_yet_durable
            and self.status in (0x0000,)
        )


def retrieve(
    node: AnyNode,
    study_uid: str,
    series_uid: str | None = None,
    *,
    method: str | None = None,
    archive: StoresBytes | None = None,
    move_destination: HasAeTitle | str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RetrieveResult:
    """Bring a study (or one series) from ``node`` to this workstation.

    ``method`` defaults to the node's. C-MOVE asks the PACS to send to ``move_destination`` (an
    AE title or anything with ``.aet``, e.g. our running listener; default: the node's calling
    AE title, which the PACS must know with our listener's address). C-GET receives on this
    association and stores each object into ``archive`` (default: the default archive).
    An object fetched from a PACS can be fetched again, so C-GET acknowledges each one once its
    complete file has its final name (never a partial file) and leaves the fsyncs and index rows
    to the archive's batches; every stored object is durable and indexed before this returns.
    Cancelling sends C-CANCEL and returns promptly with what arrived. A DICOMweb node retrieves
    by WADO-RS into ``archive`` (``move_destination`` does not apply).
    """
    if isinstance(node, DicomWebNode):
        from dicom_net import dicomweb

        if method not in (None, node.retrieve_method):
            raise ValueError(f"node {node.name} is a DICOMweb node: it retrieves by WADO-RS, not {method}")
        return dicomweb.retrieve(
            node, study_uid, series_uid, archive=archive, progress=progress, cancel=cancel
        )
    method = method or node.retrieve_method
    if method not in ("move", "get"):
        raise ValueError(f"retrieve method {method!r} must be 'move' or 'get'")
    if not study_uid:
        raise ValueError("a study UID is required")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    identifier.StudyInstanceUID = study_uid
    if series_uid:
        identifier.SeriesInstanceUID = series_uid
    result = RetrieveResult(method=method)
    progress = without_repeats(progress)
    start = time.monotonic()
    if method == "get" and archive is None:
        with default_archive() as own_archive:
            _retrieve_get(node, identifier, own_archive, result, progress, cancel)
    elif method == "get":
        _retrieve_get(node, identifier, archive, result, progress, cancel)
    else:
        destination = move_destination or node.calling_aet
        destination = destination if isinstance(destination, str) else destination.aet
        _retrieve_move(node, identifier, destination, result, progress, cancel)
    result.seconds = time.monotonic() - start
    log.info(
        "C-%s of study %s%s from %s: %d completed, %d failed, %d warning, %d stored, cancelled=%s",
        method.upper(),
        study_uid,
        f" series {series_uid}" if series_uid else "",
        node.name,
        result.completed,
        result.failed,
        result.warning,
        len(result.stored),
        result.cancelled,
    )
    return result


def without_repeats(progress: Progress | None) -> Progress | None:
    """Pass on only (done, total) pairs that differ from the previous one."""
    if progress is None:
        return None
    last: list[tuple[int, int]] = []

    def report(done: int, total: int) -> None:
        if not last or last[0] != (done, total):
            last[:] = [(done, total)]
            progress(done, total)

    return report


def default_archive() -> Any:
    """The workstation's own archive (an ``Archive``, closed by the caller's ``with``)."""
    from dicom_net.archive import Archive  # imported here: echo/find/send do not need it
    from dicom_net.paths import default_archive_dir

    return Archive(default_archive_dir())


class _CancelWatcher:
    """On ``cancel``: send C-CANCEL; abort the association if the PACS has not stopped in time."""

    def __init__(self, assoc: Any, cancel: threading.Event | None, model: str) -> None:
        self.assoc, self.cancel, self.model = assoc, cancel, model
        self.done = threading.Event()
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name="pacs-cancel", daemon=True)
        if cancel is not None:
            self._thread.start()

    def _run(self) -> None:
        assert self.cancel is not None
        while not self.done.is_set():
            if self.cancel.wait(0.05):
                break
        if self.done.is_set():
            return
        self.cancelled = True
        try:
            self.assoc.send_c_cancel(1, query_model=self.model)
        except (RuntimeError, ValueError):
            return  # association already gone
        if not self.done.wait(CANCEL_GRACE_S):
            log.warning(
                "PACS did not stop within %.1f s of C-CANCEL: aborting the association", CANCEL_GRACE_S
            )
            self.assoc.abort()

    def stop(self) -> None:
        self.done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=CANCEL_GRACE_S + 1)


def _update_counts(result: RetrieveResult, status: Dataset) -> None:
    for attr, keyword in (
        ("completed", "NumberOfCompletedSuboperations"),
        ("failed", "NumberOfFailedSuboperations"),
        ("warning", "NumberOfWarningSuboperations"),
        ("remaining", "NumberOfRemainingSuboperations"),
    ):
        value = status.get(keyword)
        if value is not None:
            setattr(result, attr, int(value))


def _run_retrieve(
    node: PacsNode,
    assoc: Any,
    responses: Iterator[tuple[Dataset, Any]],
    model: str,
    result: RetrieveResult,
    progress: Progress | None,
    cancel: threading.Event | None,
    activity: list[float],
    on_pending: Callable[[], None],
) -> None:
    """Consume C-GET/C-MOVE responses into ``result``; shared by both methods."""
    what = f"C-{result.method.upper()}"
    watcher = _CancelWatcher(assoc, cancel, model)
    try:
        for status, answer in responses:
            if "Status" not in status:
                if watcher.cancelled:  # we aborted after C-CANCEL: not an error
                    break
                raise_for_lost_association(node, what, time.monotonic() - activity[0])
            activity[0] = time.monotonic()
            _update_counts(result, status)
            category = code_to_category(status.Status)
            if category == "Pending":
                on_pending()
                continue
            result.status = int(status.Status)
            if answer is not None and "FailedSOPInstanceUIDList" in answer:
                uids = answer.FailedSOPInstanceUIDList
                result.failed_sop_uids = [uids] if isinstance(uids, str) else [str(u) for u in uids]
            if category == "Cancel":
                break
            if category == "Failure" and not result.completed and not result.stored:
                raise PacsOperationFailed(
                    f"{describe(node)} refused the {what}: status 0x{status.Status:04X}{_error_comment(status)}",
                    int(status.Status),
                )
            break
    finally:
        watcher.stop()
        result.cancelled = watcher.cancelled
    if progress is not None and not result.cancelled:
        done = max(result.completed + result.failed + result.warning, len(result.stored))
        progress(done, done)


def _retrieve_move(
    node: PacsNode,
    identifier: Dataset,
    destination: str,
    result: RetrieveResult,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> None:
    model = StudyRootQueryRetrieveInformationModelMove
    activity = [time.monotonic()]

    def on_pending() -> None:
        if progress is not None:
            done = result.completed + result.failed + result.warning
            progress(done, done + result.remaining)

    with associate(node, [build_context(model)]) as assoc:
        responses = assoc.send_c_move(identifier, destination, model, msg_id=1)
        _run_retrieve(node, assoc, responses, model, result, progress, cancel, activity, on_pending)


def _retrieve_get(
    node: PacsNode,
    identifier: Dataset,
    archive: StoresBytes,
    result: RetrieveResult,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> None:
    model = StudyRootQueryRetrieveInformationModelGet
    contexts, roles = storage_contexts_for_get((model,))
    activity = [time.monotonic()]
    source = f"C-GET from {node.name}"
    in_batches = stores_in_batches(archive)
    batched: dict[str, bool] = {"defer_index": True, "sync_before_return": False} if in_batches else {}

    def handle_store(event: evt.Event) -> int:
        """Store one object exactly as received; a refusal goes back to the PACS as its status."""
        activity[0] = time.monotonic()
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        sop_class = str(event.request.AffectedSOPClassUID)
        try:  # our own File Meta encoder: pynetdicom's (through a pydicom Dataset) costs ~1 ms an object
            part10 = file_meta_header(sop_class, sop_uid, str(event.context.transfer_syntax), node.aet)
            archive.store_bytes(
                part10 + event.encoded_dataset(include_meta=False),
                source=source,
                expected_sop_class=sop_class,
                expected_sop_instance=sop_uid,
                **batched,
            )
        except Exception as exc:  # noqa: BLE001 - any failure must reach the PACS as a status, not vanish
            status = int(getattr(exc, "status", 0xA700))
            log.error("C-GET store of %s failed with 0x%04X: %s", sop_uid, status, type(exc).__name__)
            result.store_failures.append(sop_uid)
            return status
        result.stored.append(sop_uid)
        return 0x0000

    def on_pending() -> None:  # after each sub-operation: counts of the PACS are exact here
        if progress is not None:
            done = len(result.stored) + len(result.store_failures)
            progress(done, max(done, result.completed + result.failed + result.warning + result.remaining))

    try:
        with associate(node, contexts, ext_neg=roles, handlers=[(evt.EVT_C_STORE, handle_store)]) as assoc:
            responses = assoc.send_c_get(identifier, model, msg_id=1)
            _run_retrieve(node, assoc, responses, model, result, progress, cancel, activity, on_pending)
    finally:
        # whatever happened, what was acknowledged is fsynced and indexed on return
        if in_batches and archive.flush() is False:  # type: ignore[attr-defined]
            result.not_yet_durable = True
            log.error(
                "C-GET from %s: stored objects are not yet fsynced and indexed (disk full?); "
                "the archive keeps retrying",
                node.name,
            )


# ------------------------------------------------------------------------------------------------
# C-STORE
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceStatus:
    """The outcome of sending one item: ``status`` is the PACS's C-STORE status, or None if unsent."""

    item: str
    sop_instance_uid: str | None
    status: int | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and code_to_category(self.status) in ("Success", "Warning")


@dataclass
class SendResult:
    statuses: list[InstanceStatus] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(s.ok for s in self.statuses)

    @property
    def failed(self) -> list[InstanceStatus]:
        return [s for s in self.statuses if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.cancelled and not self.failed


_NO_REPLY = "no reply"


@dataclass
class SendItem:
    """One thing to send, described before any association or request: ``error`` when unsendable."""

    label: str
    dataset: Dataset | None = None
    path: Path | None = None
    sop_class: str = ""
    sop_uid: str = ""
    syntax: str = ""
    error: str = ""


def expand_items(items: Iterable[str | Path | Dataset]) -> list[str | Path | Dataset]:
    """Folders become the files below them (:func:`hulu_common.files.expand_paths`); files and
    in-memory datasets stay as given, in order."""
    out: list[str | Path | Dataset] = []
    for item in items:
        out.extend([item] if isinstance(item, Dataset) else expand_paths([item]))
    return out


def describe_item(item: str | Path | Dataset) -> SendItem:
    if isinstance(item, Dataset):
        label = f"dataset {item.get('SOPInstanceUID', '?')}"
        if "SOPClassUID" not in item or "SOPInstanceUID" not in item:
            return SendItem(label, error="dataset lacks SOP Class UID or SOP Instance UID")
        meta = getattr(item, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta:  # pynetdicom needs one: assume explicit LE
            item = copy.copy(item)
            item.file_meta = FileMetaDataset()
            item.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return SendItem(
            label,
            dataset=item,
            sop_class=str(item.SOPClassUID),
            sop_uid=str(item.SOPInstanceUID),
            syntax=str(item.file_meta.TransferSyntaxUID),
        )
    path = Path(item)
    try:
        head = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        syntax = str(head.file_meta.TransferSyntaxUID)
        sop_class, sop_uid = str(head.SOPClassUID), str(head.SOPInstanceUID)
    except FileNotFoundError:
        return SendItem(str(path), path=path, error="file not found")
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError) as exc:
        return SendItem(
            str(path), path=path, error=f"not a readable DICOM Part-10 file ({type(exc).__name__})"
        )
    return SendItem(str(path), path=path, sop_class=sop_class, sop_uid=sop_uid, syntax=syntax)


def begin_send(
    items: Iterable[str | Path | Dataset], progress: Progress | None
) -> tuple[SendResult, list[SendItem], int]:
    """Describe ``items`` (directories walked): a result already holding the statuses of those that
    cannot be sent, the sendable ones, and the total (reported as the first progress)."""
    described = [describe_item(i) for i in expand_items(items)]
    result = SendResult()
    result.statuses.extend(
        InstanceStatus(d.label, d.sop_uid or None, None, d.error) for d in described if d.error
    )
    if progress is not None:
        progress(len(result.statuses), len(described))
    return result, [d for d in described if not d.error], len(described)


def finish_send(result: SendResult, verb: str, node_name: str, total: int, start: float) -> SendResult:
    """Time and log a finished send (counts only)."""
    result.seconds = time.monotonic() - start
    log.info(
        "%s to %s: %d of %d sent, %d failed, cancelled=%s",
        verb,
        node_name,
        result.sent,
        total,
        len(result.failed),
        result.cancelled,
    )
    return result


def send(
    node: AnyNode,
    items: Sequence[str | Path | Dataset] | Iterable[str | Path | Dataset],
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> SendResult:
    """C-STORE files (directories are walked) or datasets to ``node``, one status per item.

    Items that cannot be read, or whose SOP class the PACS did not accept, get a status of None
    and a message; the others are still sent. Raises PacsError only when no association at all
    can be made. A DICOMweb node is sent to by STOW-RS.
    """
    if isinstance(node, DicomWebNode):
        from dicom_net import dicomweb

        return dicomweb.send(node, items, progress=progress, cancel=cancel)
    start = time.monotonic()
    result, sendable, total = begin_send(items, progress)
    done = len(result.statuses)
    for batch in storage_contexts_for_send({(d.sop_class, d.syntax) for d in sendable}):
        if not sendable or result.cancelled:
            break
        batch_classes = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in batch}
        todo = [d for d in sendable if (d.sop_class, d.syntax) in batch_classes]
        with associate(node, batch) as assoc:
            lost = False
            for index, item in enumerate(todo):
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                if result.cancelled or lost or not assoc.is_established:
                    reason = "cancelled" if result.cancelled else "association lost before it was sent"
                    result.statuses.append(InstanceStatus(item.label, item.sop_uid, None, reason))
                else:
                    status = _send_one(node, assoc, item, index % 65535 + 1)
                    result.statuses.append(status)
                    # no reply means the association is gone (pynetdicom aborts on a timeout, and may
                    # not have noticed a peer's abort yet): sending on would only wait out timeouts
                    lost = status.status is None and status.message.startswith(_NO_REPLY)
                done += 1
                if progress is not None:
                    progress(done, total)
    return finish_send(result, "C-STORE", node.name, total, start)


def _send_one(node: PacsNode, assoc: Any, item: SendItem, msg_id: int) -> InstanceStatus:
    try:
        dataset = item.dataset if item.dataset is not None else dcmread(item.path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        return InstanceStatus(item.label, item.sop_uid, None, f"cannot read: {type(exc).__name__}")
    start = time.monotonic()
    try:
        rsp = assoc.send_c_store(dataset, msg_id=msg_id)
    except ValueError as exc:
        return InstanceStatus(item.label, item.sop_uid, None, f"not accepted by the PACS: {exc}")
    except RuntimeError:  # pynetdicom: the association ended (peer abort) just before this request
        return InstanceStatus(item.label, item.sop_uid, None, "association lost before it was sent")
    if "Status" not in rsp:
        timed_out = time.monotonic() - start >= node.timeout_s * 0.9
        reason = (
            f"{_NO_REPLY} within {node.timeout_s:g} s" if timed_out else f"{_NO_REPLY}: association aborted"
        )
        return InstanceStatus(item.label, item.sop_uid, None, reason)
    status = int(rsp.Status)
    return InstanceStatus(
        item.label, item.sop_uid, status, "" if status == 0 else _error_comment(rsp).strip(" ()")
    )
