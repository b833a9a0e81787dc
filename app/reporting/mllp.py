"""MLLP client: one HL7 message out (0x0B message 0x1C 0x0D, UTF-8), one ACK back.

Outcomes: an :class:`Ack` (AA/AE/AR or CA/CE/CR), or :class:`NoAck` when the connection fails,
closes or times out before a whole ACK arrives - the message may or may not have been received,
so the caller resends it with the same MSH-10.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


class NoAck(ConnectionError):
    """No complete acknowledgement: the message's fate is unknown."""


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


def send_message(endpoint: MllpEndpoint, message: bytes, *, timeout: float = 10.0) -> Ack:
    """Send one framed message and wait up to ``timeout`` seconds for its ACK."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(frame(message))
            buffer = b""
            while END_BLOCK not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise NoAck("connection closed before an ACK arrived")
                buffer += chunk
    except OSError as exc:
        if isinstance(exc, NoAck):
            raise
        raise NoAck(f"{type(exc).__name__}: {exc}") from exc
    start = buffer.find(START_BLOCK)
    body = buffer[start + 1 : buffer.find(END_BLOCK)]
    return parse_ack(body.decode("utf-8", errors="replace"))
