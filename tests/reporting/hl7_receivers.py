"""Real MLLP receivers written by others, run on loopback for the tests: python-hl7's asyncio
server and hl7apy's MLLPServer. Each records every message it gets (raw text) and answers as
configured: ``AA``, ``AE``, ``AR`` or ``drop`` (read the message, close without an ACK)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import hl7
import hl7.mllp
from hl7apy.core import Message as HapyMessage
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message


@dataclass
class Receiver:
    host: str
    port: int
    mode: str = "AA"
    messages: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def control_ids(self) -> list[str]:
        with self.lock:
            return [str(hl7.parse(m).segment("MSH")[10]) for m in self.messages]

    def record(self, text: str) -> None:
        with self.lock:
            self.messages.append(text)


@contextlib.contextmanager
def python_hl7_receiver(mode: str = "AA", port: int = 0) -> Iterator[Receiver]:
    """python-hl7's asyncio MLLP server (UTF-8 passed explicitly: its default is ASCII).

    Mode ``hold`` records the message and never answers (the sender waits or dies).
    """
    loop = asyncio.new_event_loop()
    receiver = Receiver("127.0.0.1", port, mode)
    started = threading.Event()
    holder: dict[str, object] = {}

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                receiver.record(str(message))
                if receiver.mode == "drop":
                    break
                if receiver.mode == "hold":
                    continue
                writer.writemessage(message.create_ack(ack_code=receiver.mode))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", port, encoding="utf-8")
        holder["server"] = server
        receiver.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(_swallow_cancel(main())), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield receiver
    finally:
        loop.call_soon_threadsafe(holder["server"].close)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(10)
        loop.close()


async def _swallow_cancel(coro) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await coro


def _ack_er7(message_text: str, code: str) -> str:
    incoming = parse_message(message_text, find_groups=False)
    ack = HapyMessage("ACK", version="2.5.1")
    ack.msh.msh_3 = "RIS"
    ack.msh.msh_5 = incoming.msh.msh_3.to_er7()
    ack.msh.msh_10 = "A" + incoming.msh.msh_10.to_er7()[:19]
    ack.msh.msh_18 = "UNICODE UTF-8"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = incoming.msh.msh_10.to_er7()
    return ack.to_mllp()


@contextlib.contextmanager
def hl7apy_receiver(mode: str = "AA") -> Iterator[Receiver]:
    """hl7apy's threading MLLPServer with an ORU^R01 handler."""
    receiver = Receiver("127.0.0.1", 0, mode)

    class OruHandler(AbstractHandler):
        def reply(self) -> str:
            receiver.record(self.incoming_message)
            if receiver.mode == "drop":
                raise ConnectionAbortedError("configured to drop")
            return _ack_er7(self.incoming_message, receiver.mode)

    handlers = {"ORU^R01^ORU_R01": (OruHandler,), "ORU^R01": (OruHandler,)}
    server = MLLPServer("127.0.0.1", 0, handlers)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
