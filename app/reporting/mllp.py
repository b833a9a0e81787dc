"""MLLP client: one HL7 message out (0x0B message 0x1C 0x0D, UTF-8), one ACK back.

Outcomes: an :class:`Ack` (AA/AE/AR or CA/CE/CR); :class:`NotSent` when no connection could be
made (nothing left this machine); or :class:`NoAck` when the connection closes, the overall
deadline passes or the reply grows past :data:`MAX_ACK_BYTES` before a whole ACK arrives - the
message may or may not have been received, so the caller resends it with the same MSH-10.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_ACK_TIMEOUT = 30.0  # seconds from connecting to a complete ACK
MAX_ACK_BYTES = 1 << 20  # an ACK is a few hundred bytes; a babbling peer is cut off here


class NoAck(ConnectionError):
    """No complete acknowledgement: the message's fate is unknown."""


class NotSent(NoAck):
    """No connection: the message did not leave this machine."""


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    control_id: str  # MSA-2, the acknowledged MSH-10
    text: str  # MSA-3 / ERR details, as the receiver wrote them

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        return self.code in ("AR", "CR")


@dataclass(frozen=True)
class MllpEndpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MllpEndpoint:
        """``HOST:PORT`` -> endpoint; a clear error otherwise."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"RIS address must be HOST:PORT, got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def frame(message: bytes) -> bytes:
    if START_BLOCK in message or END_BLOCK[:1] in message:
        raise ValueError("an HL7 message must not contain MLLP framing bytes")
    return START_BLOCK + message + END_BLOCK


def parse_ack(payload: str) -> Ack:
    """MSA of an ACK (segments separated by CR; tolerant of LF)."""
    segments = [s for s in payload.replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        raise NoAck("reply is not an HL7 message")
    separator = segments[0][3]
    msa = next((s.split(separator) for s in segments if s.startswith("MSA")), None)
    if msa is None or len(msa) < 3:
        raise NoAck("reply has no MSA segment")
    err = [s for s in segments if s.startswith("ERR")]
    text = msa[3] if len(msa) > 3 else ""
    if err:
        text = (text + " " + " ".join(err)).strip()
    return Ack(msa[1], msa[2], text)


def send_message(
    endpoint: MllpEndpoint,
    message: bytes,
    *,
    timeout: float = DEFAULT_ACK_TIMEOUT,
    max_ack_bytes: int = MAX_ACK_BYTES,
) -> Ack:
    """Send one framed message and wait for its ACK; ``timeout`` bounds the whole exchange
    (connect, send and every byte of the reply), however slowly the peer dribbles."""
    framed = frame(message)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as exc:
        raise NotSent(f"{type(exc).__name__}: {exc}") from exc
    buffer = bytearray()
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(framed)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    raise NoAck("connection closed before an ACK arrived")
                buffer += chunk
                if END_BLOCK in buffer[-(len(chunk) + 1) :]:
                    break
                if len(buffer) > max_ack_bytes:
                    raise NoAck(f"the reply passed {max_ack_bytes} bytes without an MLLP end block")
        except TimeoutError as exc:
            raise NoAck(f"no complete ACK within {timeout:g} s") from exc
        except NoAck:
            raise
        except OSError as exc:
            raise NoAck(f"{type(exc).__name__}: {exc}") from exc
    start = buffer.find(START_BLOCK)
    body = bytes(buffer[start + 1 : buffer.find(END_BLOCK)])
    return parse_ack(body.decode("utf-8", errors="replace"))
