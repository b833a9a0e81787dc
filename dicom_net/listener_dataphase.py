"""The data phase of an accepted association, served in one thread straight from the socket.

pynetdicom negotiates the association (ACSE, presentation contexts, TLS, allow-lists). After
that, a storage association only carries C-STORE and C-ECHO, and pynetdicom's route for each
object (DUL thread -> queues -> DIMSE decode with pydicom -> association thread -> handler ->
pydicom-encoded response -> DUL thread) costs several thread wake-ups and milliseconds per
object. Here the DUL thread itself reads each P-DATA-TF PDU, reassembles the command and
dataset, calls the store handler and writes the response PDU, as DCMTK's storescp does.

Anything else (an unexpected command, a command without a Message ID, a malformed PDU, a context
that was not accepted, an oversized PDU, a dataset growing past ``max_dataset`` bytes while it
is held in memory) gets an A-ABORT and the connection is closed; nothing half-received is
stored, and a command is judged before its dataset is read, never after storing it. A failure
status carries an Error Comment (0000,0902) saying why.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Sequence
from typing import Protocol

from pynetdicom.association import Association

log = logging.getLogger(__name__)

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101
_PDATA, _RELEASE_RQ, _RELEASE_RP, _ABORT = 0x04, 0x05, 0x06, 0x07
_RELEASE_RP_PDU = bytes([_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0])
_ABORT_PDU = bytes([_ABORT, 0, 0, 0, 0, 4, 0, 0, 0x02, 0x00])  # source: service provider
_MAX_COMMAND = 64 * 1024


class StoreTarget(Protocol):
    def store(
        self,
        sop_class: str,
        sop_instance: str,
        transfer_syntax: str,
        dataset: Sequence[bytes | bytearray | memoryview],
        calling: str,
    ) -> tuple[int, str]: ...  # status, and for a failure the Error Comment

    def echo(self) -> int: ...


class ProtocolViolation(Exception):
    """The peer broke the DICOM upper layer or DIMSE rules: abort the association."""


def parse_command(raw: bytes) -> dict[int, bytes]:
    """Group-0000 elements of a command set (always implicit VR little endian)."""
    elements: dict[int, bytes] = {}
    offset = 0
    while offset < len(raw):
        if offset + 8 > len(raw):
            raise ProtocolViolation("truncated command element")
        group, element, length = struct.unpack_from("<HHI", raw, offset)
        offset += 8
        if group != 0x0000 or offset + length > len(raw):
            raise ProtocolViolation("malformed command set")
        elements[element] = raw[offset : offset + length]
        offset += length
    return elements


def _uid(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip("\0 ")


def _ushort(elements: dict[int, bytes], element: int) -> int:
    value = elements.get(element)
    if value is None or len(value) != 2:
        raise ProtocolViolation(f"command element (0000,{element:04X}) missing or malformed")
    return struct.unpack("<H", value)[0]


def _even_uid(uid: bytes) -> bytes:
    return uid + b"\0" if len(uid) % 2 else uid


def error_comment(text: str) -> bytes:
    """An Error Comment (LO) value: at most 64 characters, ASCII, no backslash or control codes.

    A reason too long for that loses its position first ("... at byte N of the dataset").
    """
    if len(text) > 64:
        text = text.split(" at byte ")[0]
    clean = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in text)[:64].rstrip()
    raw = clean.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def encode_response(
    command_field: int,
    message_id: int,
    status: int,
    sop_class: bytes,
    sop_instance: bytes | None,
    comment: str = "",
) -> bytes:
    """An implicit-VR little-endian C-STORE-RSP or C-ECHO-RSP command set."""
    elements = [
        (0x0002, _even_uid(sop_class)),
        (0x0100, struct.pack("<H", command_field)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", NO_DATASET)),
        (0x0900, struct.pack("<H", status)),
    ]
    if comment:
        elements.append((0x0902, error_comment(comment)))
    if sop_instance is not None:
        elements.append((0x1000, _even_uid(sop_instance)))
    body = b"".join(struct.pack("<HHI", 0, tag, len(value)) + value for tag, value in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def pdata_pdu(context_id: int, command: bytes) -> bytes:
    """One P-DATA-TF PDU holding one complete command PDV."""
    item = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return struct.pack(">BBI", _PDATA, 0, len(item)) + item


class DataPhase:
    """Serves one established association until release, abort or a protocol error."""

    def __init__(
        self,
        assoc: Association,
        sock: socket.socket,
        target: StoreTarget,
        max_pdu: int,
        restart_idle_timer,
        max_dataset: int = 0,
    ) -> None:
        self.sock = sock
        self.target = target
        self.max_pdu = max_pdu or (1 << 32) - 1
        self.max_dataset = max_dataset or (1 << 63)  # 0: no cap
        self.calling = str(assoc.requestor.ae_title or "").strip()
        self.contexts = {
            cx.context_id: (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            for cx in assoc.accepted_contexts
        }
        self.restart_idle_timer = restart_idle_timer
        self._reset()

    def _reset(self) -> None:
        self.command = bytearray()
        self.request: dict[int, bytes] | None = None
        self.context_id: int | None = None
        self.dataset: list[memoryview] | None = None  # fragments, joined once with the file meta
        self.dataset_bytes = 0

    def run(self) -> str:
        """Serve PDUs; returns 'released' or 'aborted'."""
        try:
            while True:
                header = self._recv_exact(6)
                if len(header) < 6:
                    return "aborted"  # connection closed by the peer
                pdu_type, _, length = struct.unpack(">BBI", header)
                self.restart_idle_timer()
                if pdu_type == _PDATA:
                    if length > self.max_pdu:
                        raise ProtocolViolation(
                            f"P-DATA-TF of {length} bytes over our maximum {self.max_pdu}"
                        )
                    body = self._recv_exact(length)
                    if len(body) < length:
                        return "aborted"
                    self._on_pdata(body)
                elif pdu_type == _RELEASE_RQ and length == 4:
                    self._recv_exact(4)
                    self.sock.sendall(_RELEASE_RP_PDU)
                    return "released"
                elif pdu_type == _ABORT:
                    return "aborted"
                else:
                    raise ProtocolViolation(f"unexpected PDU type 0x{pdu_type:02X} in the data phase")
        except ProtocolViolation as exc:
            log.warning("aborting association from %s: %s", self.calling, exc)
            self._send_abort()
            return "aborted"
        except (OSError, TimeoutError) as exc:
            log.info("association from %s ended: %s", self.calling, type(exc).__name__)
            self._send_abort()
            return "aborted"

    def _recv_exact(self, count: int) -> bytearray:
        """``count`` bytes; once the first arrives, the rest must follow within the socket's
        timeout in all (a peer dribbling a PDU, or announcing more than it sends, is cut off)."""
        buf = bytearray(count)
        view = memoryview(buf)
        got = 0
        budget = self.sock.gettimeout()
        deadline = None
        try:
            while got < count:
                n = self.sock.recv_into(view[got:], min(count - got, 1 << 20))
                if n == 0:
                    break
                got += n
                if budget is not None and got < count:
                    deadline = deadline or time.monotonic() + budget
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("PDU not complete within the network timeout")
                    self.sock.settimeout(remaining)
        finally:
            view.release()
            if deadline is not None:
                self.sock.settimeout(budget)
        if got < count:
            del buf[got:]
        return buf

    def _send_abort(self) -> None:
        try:
            self.sock.sendall(_ABORT_PDU)
        except OSError:
            pass

    def _on_pdata(self, body: bytearray) -> None:
        view = memoryview(body)
        offset = 0
        while offset < len(body):
            if offset + 6 > len(body):
                raise ProtocolViolation("truncated presentation data value item")
            item_length, context_id, control = struct.unpack_from(">IBB", body, offset)
            end = offset + 4 + item_length
            if item_length < 2 or end > len(body):
                raise ProtocolViolation("malformed presentation data value item")
            if context_id not in self.contexts:
                raise ProtocolViolation(f"presentation context {context_id} was not accepted")
            fragment = view[offset + 6 : end]
            offset = end
            if control & 0x01:
                self._on_command_fragment(context_id, fragment, last=bool(control & 0x02))
            else:
                self._on_dataset_fragment(context_id, fragment, last=bool(control & 0x02))

    def _on_command_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        if self.request is not None:
            raise ProtocolViolation("a new command before the previous dataset ended")
        self.command += fragment
        if len(self.command) > _MAX_COMMAND:
            raise ProtocolViolation("command set too large")
        if not last:
            return
        request = parse_command(bytes(self.command))
        self.command = bytearray()
        command_field = _ushort(request, 0x0100)
        has_dataset = _ushort(request, 0x0800) != NO_DATASET
        _ushort(request, 0x0110)  # no Message ID, no answer possible: abort now, before any dataset
        if command_field == C_ECHO_RQ and not has_dataset:
            status = self.target.echo()
            self._respond(context_id, C_ECHO_RSP, request, status, with_instance=False)
        elif command_field == C_STORE_RQ and has_dataset:
            self.request, self.context_id, self.dataset = request, context_id, []
        else:
            raise ProtocolViolation(f"unsupported command 0x{command_field:04X}")

    def _on_dataset_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        if self.request is None or self.dataset is None or context_id != self.context_id:
            raise ProtocolViolation("dataset fragment without its C-STORE command")
        self.dataset_bytes += len(fragment)
        if self.dataset_bytes > self.max_dataset:
            raise ProtocolViolation(
                f"dataset of SOP instance {_uid(self.request.get(0x1000, b''))} exceeds the cap of "
                f"{self.max_dataset} bytes held in memory (listener max_dataset_bytes)"
            )
        self.dataset.append(fragment)  # a view into this PDU's own buffer: no copy yet
        if not last:
            return
        request, dataset = self.request, self.dataset
        self._reset()
        abstract_syntax, transfer_syntax = self.contexts[context_id]
        sop_class = _uid(request.get(0x0002, b""))
        sop_instance = _uid(request.get(0x1000, b""))
        if sop_class != abstract_syntax:
            status, comment = 0x0122, "SOP Class differs from the presentation context's"
            log.warning("C-STORE of %s on a context for another SOP class -> 0x0122", sop_instance)
        else:
            status, comment = self.target.store(
                sop_class, sop_instance, transfer_syntax, dataset, self.calling
            )
        self._respond(context_id, C_STORE_RSP, request, status, with_instance=True, comment=comment)

    def _respond(
        self,
        context_id: int,
        command_field: int,
        request: dict[int, bytes],
        status: int,
        with_instance: bool,
        comment: str = "",
    ) -> None:
        message_id = _ushort(request, 0x0110)
        response = encode_response(
            command_field,
            message_id,
            status,
            request.get(0x0002, b""),
            request.get(0x1000, b"") if with_instance else None,
            comment,
        )
        self.sock.sendall(pdata_pdu(context_id, response))
