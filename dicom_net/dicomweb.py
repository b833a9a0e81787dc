"""Talking to a DICOMweb node: verify and query (QIDO-RS), retrieve (WADO-RS), send (STOW-RS).

The same calls and results as the DIMSE client in :mod:`dicom_net.scu`, which hands a
:class:`~dicom_net.pacs_nodes.DicomWebNode` to the functions here, so callers never care which
kind a node is. Retrieved objects go through the archive's ``store_bytes`` exactly as the
listener's and C-GET's do (same validation, atomic storage, batched index). Every request has a
deadline (the node's timeout); failures raise PacsErrors naming the HTTP status and what to check.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from dicom_net.dicomweb_http import DicomWebError, http_error, http_errors, open_client
from dicom_net.pacs_nodes import DicomWebNode
from dicom_net.scu import (
    CANCEL_GRACE_S,
    EchoResult,
    InstanceStatus,
    Progress,
    RetrieveResult,
    SendItem,
    SendResult,
    StoresBytes,
    begin_send,
    default_archive,
    finish_send,
    stores_in_batches,
    without_repeats,
)
from dicom_net.scu_assoc import PacsError
from dicom_net.scu_find import RETURN_KEYS, QueryError, answer_to_dict, build_identifier

log = logging.getLogger(__name__)

# Transfer syntaxes we accept from WADO-RS: whatever the server holds ("*"), so what it stored
# arrives byte for byte (compressed pixel data stays compressed, as with C-GET).
ANY_SYNTAX = (("application/dicom", "*"),)
STOW_BATCH_BYTES = 32 << 20  # one STOW-RS request carries at most this much (or one larger object)
STOW_BATCH_ITEMS = 100


# ------------------------------------------------------------------------------------------------
# QIDO-RS
# ------------------------------------------------------------------------------------------------


def echo(node: DicomWebNode) -> EchoResult:
    """Verify the node with the smallest QIDO-RS query (one study, its UID only)."""
    start = time.monotonic()
    client = open_client(node)
    with http_errors(node, "QIDO-RS verification"):
        client.search_for_studies(limit=1, fields=["StudyInstanceUID"])
    return EchoResult(status=0x0000, seconds=time.monotonic() - start)


def find(
    node: DicomWebNode, level: str, *, cancel: threading.Event | None = None, **keys: str | None
) -> list[dict]:
    """QIDO-RS query at study, series or image level; one dict per match as :func:`scu.find` gives."""
    if level == "patient":
        raise QueryError("DICOMweb (QIDO-RS) has no patient level: query at study level")
    identifier = build_identifier(level, keys)  # same validation of keys and dates as C-FIND
    filters = {
        elem.keyword: str(elem.value)
        for elem in identifier
        if elem.keyword != "QueryRetrieveLevel" and elem.value not in ("", None)
    }
    study_uid = filters.pop("StudyInstanceUID", None) if level != "study" else None
    series_uid = filters.pop("SeriesInstanceUID", None) if level == "image" else None
    client = open_client(node)
    fields = list(RETURN_KEYS[level])
    with http_errors(node, f"QIDO-RS {level} query"):
        if level == "study":
            answers = client.search_for_studies(fields=fields, search_filters=filters)
        elif level == "series":
            answers = client.search_for_series(study_uid, fields=fields, search_filters=filters)
        else:
            answers = client.search_for_instances(
                study_uid, series_uid, fields=fields, search_filters=filters
            )
        matches = []
        for answer in answers:
            match = answer_to_dict(Dataset.from_json(answer), level)
            for keyword, value in (("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid)):
                if value and keyword in match and not match[keyword]:
                    match[keyword] = value  # servers may leave out the keys of the path
            matches.append(match)
    log.info("QIDO-RS %s level on %s: %d matches", level, node.name, len(matches))
    return matches


def _instance_count(node: DicomWebNode, client: Any, study_uid: str, series_uid: str | None) -> int | None:
    """How many instances the study (series) holds by QIDO-RS; None when the server does not say."""
    keyword = "NumberOfSeriesRelatedInstances" if series_uid else "NumberOfStudyRelatedInstances"
    with http_errors(node, "QIDO-RS count before WADO-RS"):
        if series_uid:
            found = client.search_for_series(
                study_uid, fields=[keyword], search_filters={"SeriesInstanceUID": series_uid}
            )
        else:
            found = client.search_for_studies(
                fields=[keyword], search_filters={"StudyInstanceUID": study_uid}
            )
    if not found:
        what = f"series {series_uid} of study {study_uid}" if series_uid else f"study {study_uid}"
        raise DicomWebError(f"{node.name} ({node.url}) holds no {what} (QIDO-RS found none)")
    value = Dataset.from_json(found[0]).get(keyword)
    return int(value) if value not in (None, "") else None


# ------------------------------------------------------------------------------------------------
# WADO-RS
# ------------------------------------------------------------------------------------------------


class _StreamCloser:
    """On ``cancel``: let the loop stop at the next object; close the stream if it has not within
    the grace time (as C-GET sends C-CANCEL, then aborts)."""

    def __init__(self, cancel: threading.Event | None, node_name: str) -> None:
        self.cancel, self.node_name = cancel, node_name
        self.response: requests.Response | None = None
        self.done = threading.Event()
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="wado-cancel", daemon=True)
        if cancel is not None:
            self._thread.start()

    def _run(self) -> None:
        assert self.cancel is not None
        while not self.done.is_set() and not self.cancel.wait(0.05):
            pass
        if self.done.is_set() or self.done.wait(CANCEL_GRACE_S):
            return
        response = self.response
        if response is not None:
            log.warning(
                "WADO-RS did not reach the next object within %.1f s of cancel: closing", CANCEL_GRACE_S
            )
            self.closed = True
            # closing a socket does not wake a read blocked on it in another thread; shutdown does
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            response.close()

    def stop(self) -> None:
        self.done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=CANCEL_GRACE_S + 1)


def retrieve(
    node: DicomWebNode,
    study_uid: str,
    series_uid: str | None = None,
    *,
    archive: StoresBytes | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RetrieveResult:
    """WADO-RS of a study (or one series) into ``archive`` (default: the workstation's).

    The total comes from a QIDO-RS count first; each object is stored as it arrives, in the
    server's own transfer syntax, and refused (counted in ``store_failures``) when the archive's
    validation refuses it or it belongs to another study or series. Cancelling stops at the next
    object (the stream is closed if none arrives within the grace time) and keeps what arrived.
    """
    if not study_uid:
        raise ValueError("a study UID is required")
    result = RetrieveResult(method="wado-rs")
    progress = without_repeats(progress)
    start = time.monotonic()
    if archive is None:
        with default_archive() as own_archive:
            _retrieve_into(node, study_uid, series_uid, own_archive, result, progress, cancel)
    else:
        _retrieve_into(node, study_uid, series_uid, archive, result, progress, cancel)
    result.seconds = time.monotonic() - start
    log.info(
        "WADO-RS of study %s%s from %s: %d stored, %d refused, cancelled=%s",
        study_uid,
        f" series {series_uid}" if series_uid else "",
        node.name,
        len(result.stored),
        len(result.store_failures),
        result.cancelled,
    )
    return result


def _retrieve_into(
    node: DicomWebNode,
    study_uid: str,
    series_uid: str | None,
    archive: StoresBytes,
    result: RetrieveResult,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> None:
    closer = _StreamCloser(cancel, node.name)
    client = open_client(node, on_response=lambda r: setattr(closer, "response", r))
    total = _instance_count(node, client, study_uid, series_uid) or 0
    in_batches = stores_in_batches(archive)
    batched: dict[str, bool] = {"defer_index": True, "sync_before_return": False} if in_batches else {}
    source = f"WADO-RS from {node.name}"
    if progress is not None:
        progress(0, total)
    what = "WADO-RS series retrieve" if series_uid else "WADO-RS study retrieve"
    parts: Iterator[Dataset] | None = None
    try:
        with http_errors(node, what):
            if series_uid:
                parts = client.iter_series(study_uid, series_uid, media_types=ANY_SYNTAX)
            else:
                parts = client.iter_study(study_uid, media_types=ANY_SYNTAX)
            for part in _parts(parts, closer, cancel, result):
                _store_part(part, study_uid, series_uid, archive, source, batched, result)
                if progress is not None:
                    done = len(result.stored) + len(result.store_failures)
                    progress(done, max(done, total))
        result.status = 0x0000 if not result.cancelled else None
    finally:
        closer.stop()
        if parts is not None and hasattr(parts, "close"):
            parts.close()
        if in_batches and archive.flush() is False:  # type: ignore[attr-defined]
            result.not_yet_durable = True
            log.error("WADO-RS from %s: stored objects are not yet fsynced and indexed", node.name)
    result.completed = len(result.stored)
    result.failed = len(result.store_failures)


def _parts(
    parts: Iterator[Dataset], closer: _StreamCloser, cancel: threading.Event | None, result: RetrieveResult
) -> Iterator[Dataset]:
    """The objects of a WADO-RS answer until it ends or ``cancel`` is set."""
    while True:
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            return
        try:
            part = next(parts)
        except StopIteration:
            return
        except Exception as exc:
            if closer.closed:  # we closed the stream on cancel: not an error
                result.cancelled = True
                return
            if isinstance(exc, (requests.exceptions.RequestException, ValueError)):
                raise  # named by http_errors
            raise DicomWebError(
                f"WADO-RS from {closer.node_name}: the server sent an object that is not readable DICOM "
                f"({type(exc).__name__}); stopped after {len(result.stored)} stored"
            ) from None
        yield part


def _store_part(
    part: Dataset,
    study_uid: str,
    series_uid: str | None,
    archive: StoresBytes,
    source: str,
    batched: dict[str, bool],
    result: RetrieveResult,
) -> None:
    """Store one received object through the archive's validation; a refusal is counted, not raised."""
    sop_uid = str(part.get("SOPInstanceUID", "?"))
    buffer = getattr(part, "buffer", None)
    try:
        if not isinstance(buffer, io.BytesIO):
            raise DicomWebError("the received object's bytes are not available")
        if part.get("StudyInstanceUID") != study_uid or (
            series_uid and part.get("SeriesInstanceUID") != series_uid
        ):
            raise DicomWebError("the server sent an object of another study or series")
        archive.store_bytes(
            buffer.getvalue(),
            source=source,
            expected_sop_class=str(part.get("SOPClassUID", "")) or None,
            expected_sop_instance=sop_uid,
            **batched,
        )
    except Exception as exc:  # noqa: BLE001 - one bad object must not lose the others
        log.error("WADO-RS object %s refused: %s", sop_uid, type(exc).__name__)
        result.store_failures.append(sop_uid)
        return
    result.stored.append(sop_uid)


# ------------------------------------------------------------------------------------------------
# STOW-RS
# ------------------------------------------------------------------------------------------------


def _item_size(item: SendItem) -> int:
    if item.path is not None:
        try:
            return item.path.stat().st_size
        except OSError:
            return 0
    return 0


def _batches(items: Sequence[SendItem]) -> Iterator[list[SendItem]]:
    batch: list[SendItem] = []
    size = 0
    for item in items:
        item_size = _item_size(item)
        if batch and (size + item_size > STOW_BATCH_BYTES or len(batch) >= STOW_BATCH_ITEMS):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def _as_part10(item: SendItem) -> Dataset:
    """The object as a Part-10 dataset (``dicomweb-client`` encodes it as read; datasets given in
    memory get their File Meta Information)."""
    if item.dataset is None:
        assert item.path is not None
        return dcmread(item.path)
    buffer = io.BytesIO()
    dcmwrite(buffer, copy.copy(item.dataset), enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _stow_statuses(answer: Dataset | None, batch: Sequence[SendItem]) -> list[InstanceStatus]:
    """One status per item from the STOW-RS answer (PS3.18 10.5.3: referenced and failed SOPs)."""
    outcome: dict[str, tuple[int, str]] = {}
    if answer is not None:
        for ref in answer.get("ReferencedSOPSequence", []):
            warning = ref.get("WarningReason")
            outcome[str(ref.get("ReferencedSOPInstanceUID"))] = (int(warning) if warning else 0x0000, "")
        for failed in answer.get("FailedSOPSequence", []):
            reason = failed.get("FailureReason")
            outcome[str(failed.get("ReferencedSOPInstanceUID"))] = (
                int(reason) if reason is not None else 0xC000,
                "refused by the server",
            )
    statuses = []
    for item in batch:
        if item.sop_uid in outcome:
            status, message = outcome[item.sop_uid]
            statuses.append(InstanceStatus(item.label, item.sop_uid, status, message))
        else:
            statuses.append(InstanceStatus(item.label, item.sop_uid, None, "no status in the STOW-RS answer"))
    return statuses


def _post(node: DicomWebNode, client: Any, batch: Sequence[SendItem]) -> list[InstanceStatus]:
    """One STOW-RS request; a 4xx answer with per-object statuses (e.g. 409) gives those statuses."""
    try:
        answer = client.store_instances([_as_part10(item) for item in batch])
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        body: Dataset | None = None
        if response is not None and "json" in response.headers.get("Content-Type", ""):
            try:
                body = Dataset.from_json(response.json())
            except ValueError:
                body = None
        if body is None or "FailedSOPSequence" not in body:
            raise http_error(node, "STOW-RS", exc) from None
        return _stow_statuses(body, batch)
    except (requests.exceptions.RequestException, ValueError) as exc:
        raise http_error(node, "STOW-RS", exc) from None
    return _stow_statuses(answer, batch)


def send(
    node: DicomWebNode,
    items: Sequence[str | Path | Dataset] | Iterable[str | Path | Dataset],
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> SendResult:
    """STOW-RS files (directories are walked) or datasets to ``node``, one status per item.

    Objects go in requests of up to 32 MB; the status of each comes from the server's answer
    (0x0000 stored, its warning or failure reason otherwise). Unreadable items get None and a
    message. Raises PacsError when the first request fails as a whole (credentials, URL, TLS);
    a later whole-request failure marks the rest unsent with the reason.
    """
    start = time.monotonic()
    result, sendable, total = begin_send(items, progress)
    done = len(result.statuses)
    client = open_client(node) if sendable else None
    stop_reason = ""
    for batch in _batches(sendable):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
        if result.cancelled or stop_reason:
            reason = "cancelled" if result.cancelled else stop_reason
            result.statuses.extend(InstanceStatus(i.label, i.sop_uid, None, reason) for i in batch)
        else:
            try:
                result.statuses.extend(_post(node, client, batch))
            except PacsError as exc:
                if not result.sent:
                    raise
                stop_reason = f"not sent: {exc}"
                result.statuses.extend(InstanceStatus(i.label, i.sop_uid, None, stop_reason) for i in batch)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return finish_send(result, "STOW-RS", node.name, total, start)
