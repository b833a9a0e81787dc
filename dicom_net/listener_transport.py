"""pynetdicom's association server, tuned for receiving fast and bounded against hostile peers.

pynetdicom does the DICOM upper layer; this module only changes how bytes move:

- accepted sockets get TCP_NODELAY and a receive timeout; TLS handshakes happen in the
  association's thread, so a silent client cannot stall the accept loop;
- PDUs are read with large ``recv_into`` calls instead of 4 KiB ``recv`` slices, and a PDU whose
  announced length exceeds the limit for its type is refused (A-ABORT, connection closed)
  before anything is buffered;
- the association reactor waits on its message queue instead of sleeping 1 ms per loop, and the
  DUL polls its socket more often, which removes most of pynetdicom's per-message latency;
- the whole A-ASSOCIATE-RQ must arrive within the ACSE timeout (DICOM's ARTIM timer, as DCMTK's
  storescp) and every later PDU within the network timeout of its first byte, so a peer that
  dribbles bytes or announces more than it sends is cut off; connections still waiting for their
  request count apart from the association limit, and only a bounded number of them is kept;
- several processes may listen on one port (``SO_REUSEPORT``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import MODE_ACCEPTOR, Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from dicom_net.listener_dataphase import DataPhase, StoreTarget
from dicom_net.sockets import enable_nodelay, enable_reuse_port

log = logging.getLogger(__name__)

# PDU types: 1 A-ASSOCIATE-RQ, 2 -AC, 3 -RJ, 4 P-DATA-TF, 5 A-RELEASE-RQ, 6 -RP, 7 A-ABORT
_MAX_ASSOCIATE_PDU = 1024 * 1024  # presentation contexts and user identity; generous but bounded
_MAX_SMALL_PDU = 64
_ABORT_PDU = bytes([0x07, 0x00, 0, 0, 0, 4, 0, 0, 0x02, 0x00])  # A-ABORT, source: service provider
_RECV_CHUNK = 1 << 20
_DUL_IDLE_WAIT_S = 0.05  # longest a DUL waits for the socket or a wake-up before re-checking timers


class _Expired(Exception):
    """A deadline for the association request or for the rest of a PDU has passed."""


class BoundedAssociationSocket(AssociationSocket):
    """An AssociationSocket that reads PDUs in large chunks, refuses oversized ones and bounds
    how long a peer may take: the whole A-ASSOCIATE-RQ (TLS handshake included) must arrive
    within ``request_timeout`` of the connection (DICOM's ARTIM timer; storescp's ``--acse-timeout``),
    and every later PDU within ``pdu_timeout`` of its first byte, however the bytes are dribbled."""

    def __init__(
        self,
        assoc: Association,
        client_socket: socket.socket,
        max_pdu: int,
        request_timeout: float,
        pdu_timeout: float,
        on_request: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self._max_pdata = max_pdu + 6 if max_pdu else 0
        self._expect_pdu_type: int | None = None
        self._request_timeout = request_timeout
        self._request_deadline: float | None = time.monotonic() + request_timeout
        self._pdu_timeout = pdu_timeout
        self._pdu_deadline = 0.0
        self._idle_timeout = client_socket.gettimeout()
        self._on_request = on_request

    def _limit_for(self, pdu_type: int) -> int:
        if pdu_type == 0x04:
            return self._max_pdata or (1 << 32)
        if pdu_type in (0x01, 0x02):
            return _MAX_ASSOCIATE_PDU
        return _MAX_SMALL_PDU

    def recv(self, nr_bytes: int) -> bytearray:
        try:
            data = self._recv_pdu_part(nr_bytes)
        except OSError:
            self._wake_acceptor()
            raise
        if len(data) < nr_bytes:
            self._wake_acceptor()
        return data

    def _wake_acceptor(self) -> None:
        """The peer is gone before the association was set up (failed TLS handshake, port scan):
        let the acceptor stop waiting for an A-ASSOCIATE-RQ now instead of after the ACSE timeout."""
        if not self.assoc.is_established:
            self.assoc.dul.to_user_queue.put(None)

    def _recv_pdu_part(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        if sock is None:
            return bytearray()
        if nr_bytes == 6:  # pynetdicom reads the PDU header first, then its body
            self._pdu_deadline = self._request_deadline or time.monotonic() + self._pdu_timeout
            header = self._recv_within(sock, 6)
            self._expect_pdu_type = header[0] if len(header) == 6 else None
            return header
        if self._expect_pdu_type is not None and nr_bytes > self._limit_for(self._expect_pdu_type):
            log.warning(
                "peer announced a %d-byte PDU of type 0x%02X: over the limit, aborting",
                nr_bytes,
                self._expect_pdu_type,
            )
            self._abort_and_close(sock)
            return bytearray()
        self._expect_pdu_type = None
        body = self._recv_within(sock, nr_bytes)
        if len(body) == nr_bytes and self._request_deadline is not None:
            self._request_deadline = None  # the association request is in: ARTIM stops
            self._on_request()
        return body

    def _recv_within(self, sock: socket.socket, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` before the current deadline; on expiry close the connection."""
        try:
            return self._recv_exact(sock, nr_bytes, self._pdu_deadline, self._idle_timeout)
        except _Expired:
            if self._request_deadline is not None:
                what = f"no complete association request within {self._request_timeout:g} s"
            else:
                what = f"a PDU was not complete {self._pdu_timeout:g} s after it began"
            log.warning("closing the connection from %s: %s", self.assoc.requestor.address, what)
            _shutdown_quietly(sock)
            return bytearray()

    @staticmethod
    def _recv_exact(
        sock: socket.socket, nr_bytes: int, deadline: float, idle_timeout: float | None
    ) -> bytearray:
        buf = bytearray(nr_bytes)
        view = memoryview(buf)
        got = 0
        try:
            while got < nr_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Expired
                sock.settimeout(remaining if idle_timeout is None else min(remaining, idle_timeout))
                try:
                    n = sock.recv_into(view[got:], min(nr_bytes - got, _RECV_CHUNK))
                except TimeoutError:
                    if deadline - time.monotonic() <= 0:
                        raise _Expired from None
                    raise
                if n == 0:
                    break
                got += n
        finally:
            view.release()
            with contextlib.suppress(OSError):  # the socket may have been closed meanwhile
                sock.settimeout(idle_timeout)
        if got < nr_bytes:
            del buf[got:]  # connection closed early: pynetdicom sees a short read and closes
        return buf

    def _abort_and_close(self, sock: socket.socket) -> None:
        try:
            sock.sendall(_ABORT_PDU)
        except OSError:
            pass
        _shutdown_quietly(sock)


class _WakingQueue(queue.Queue):
    """The DUL's outgoing-primitive queue: a put also wakes the DUL out of its ``select``."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        try:
            os.write(self._wake_fd, b"w")
        except OSError:
            pass  # pipe full (already awake) or closed (DUL gone)


class WakingDUL(DULServiceProvider):
    """pynetdicom's DUL, but idle waits block in ``select`` on the socket and a wake-up pipe.

    pynetdicom polls the socket and sleeps 1 ms between polls; on a busy machine every sleep
    costs a scheduler round trip, several per received object. Here the thread sleeps until
    data arrives or the association thread queues a primitive (our response), so neither waits.
    """

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.to_provider_queue = _WakingQueue(self._wake_w)
        self._run_loop_delay = 0  # the wait happens in _is_transport_event
        self.data_phase_target: StoreTarget | None = None

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _is_transport_event(self) -> bool:
        if (
            self.data_phase_target is not None
            and self.state_machine.current_state == "Sta6"
            and not self.event_queue.qsize()
            and not self.to_provider_queue.qsize()
        ):
            self._serve_data_phase(self.data_phase_target)
            return True
        self._wait_for_work()
        return super()._is_transport_event()

    def _serve_data_phase(self, target: StoreTarget) -> None:
        """Association established: serve C-STORE/C-ECHO from this thread until it ends."""
        assoc = self.assoc
        phase = DataPhase(
            assoc,
            self.socket.socket,
            target,
            assoc.acceptor.maximum_length or 0,
            self._idle_timer.restart,
            max_dataset=getattr(self, "max_dataset_bytes", 0),
        )
        outcome = phase.run()
        assoc.is_established = False
        if outcome == "released":
            assoc.is_released = True
        else:
            assoc.is_aborted = True
        self._kill_thread = True
        assoc._kill = True  # the association thread's reactor returns and closes the socket

    def _wait_for_work(self) -> None:
        sock = self.socket.socket if self.socket is not None else None
        if sock is None or self.event_queue.qsize() or self.to_provider_queue.qsize() or self._kill_thread:
            return
        if getattr(sock, "pending", None) and sock.pending():
            return  # TLS has decrypted bytes buffered that select cannot see
        try:
            readable, _, _ = select.select([sock, self._wake_r], [], [], _DUL_IDLE_WAIT_S)
        except (OSError, ValueError):
            return  # socket closed meanwhile: pynetdicom's own check reports it
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 4096)
            except OSError:
                pass

    def kill_dul(self) -> None:
        super().kill_dul()
        try:
            os.write(self._wake_w, b"k")
        except OSError:
            pass


class ListenerAssociation(Association):
    """An acceptor whose reactor threads sleep until there is work instead of polling every 1 ms."""

    def __init__(self, ae: Any, mode: str) -> None:
        super().__init__(ae, mode)
        self.dul = WakingDUL(self)
        # pynetdicom pushes the timeouts into the DUL's timers when they are set: do it again
        self.acse_timeout = self.acse_timeout
        self.dimse_timeout = self.dimse_timeout
        self.network_timeout = self.network_timeout
        self.connection_timeout = self.connection_timeout

    def _run_reactor(self) -> None:
        msg_queue: queue.Queue = self.dimse.msg_queue
        self._is_paused = False
        while not self._kill:
            with msg_queue.not_empty:  # wait for a message, but re-check release/abort/timeouts often
                if not msg_queue._qsize():  # type: ignore[attr-defined]
                    msg_queue.not_empty.wait(0.005)
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if self._reactor_step():
                return

    def _reactor_step(self) -> bool:
        """One pass of pynetdicom's acceptor loop; True when the association is over."""
        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, context_id)  # type: ignore[arg-type]
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.warning("network timeout: aborting an idle association")
            self.abort()
            self.kill()
            return True
        return False


class ListenerRequestHandler(RequestHandler):
    """Creates our association and socket classes for each connection."""

    def _create_association(self) -> Association:
        assoc = ListenerAssociation(self.ae, MODE_ACCEPTOR)
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{time.strftime('%Y%m%d%H%M%S')}"
        sock = BoundedAssociationSocket(
            assoc,
            self.request,
            self.ae.maximum_pdu_size,
            request_timeout=self.ae.acse_timeout,
            pdu_timeout=self.ae.network_timeout,
            on_request=lambda: self.server.request_received(self.request),
        )
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # pynetdicom deep-copies ~150 contexts per association (tens of ms); ours only reads them
        # and EVT_REQUESTED replaces them with the few the peer proposed (listener.py)
        assoc.acceptor.supported_contexts = self.server.contexts
        assoc.requestor.address_info = self.remote
        assoc.dul.data_phase_target = self.server.data_phase_target
        assoc.dul.max_dataset_bytes = self.server.max_dataset_bytes
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:
                    assoc.bind(event, handler, args)
        return assoc


class ListenerAE(AE):
    """An AE whose association limit counts only peers that have sent their A-ASSOCIATE-RQ.

    Connections still in their ARTIM window are bounded apart (:attr:`ListenerServer.max_pending`),
    so clients that connect and dribble or send nothing cannot take a sender's place.
    """

    @property
    def active_associations(self) -> list[Association]:
        return [a for a in super().active_associations if a.requestor.primitive is not None]


class ListenerServer(ThreadedAssociationServer):
    """The accept loop: shared port, Nagle off, receive timeouts, lazy TLS handshakes, clean stop,
    and a bound on connections that have not yet sent their association request."""

    reuse_port = False
    daemon_threads = True
    data_phase_target: StoreTarget | None = None  # serve C-STORE/C-ECHO without pynetdicom's DIMSE layer
    max_dataset_bytes = 0  # largest dataset the data phase holds in memory (0: no cap)
    pending_per_association = 4  # connections awaiting their A-ASSOCIATE-RQ, per allowed association

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("request_handler", ListenerRequestHandler)
        self._pending: dict[socket.socket, None] = {}  # insertion order: oldest first
        self._pending_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    @property
    def max_pending(self) -> int:
        return self.pending_per_association * self.ae.maximum_associations

    def server_bind(self) -> None:
        if self.reuse_port:
            enable_reuse_port(self.socket)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        client, address = self.socket.accept()
        enable_nodelay(client)
        client.settimeout(self.ae.network_timeout)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        with self._pending_lock:
            while len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                log.warning("too many connections without an association request: closing the oldest")
                _shutdown_quietly(oldest)
            self._pending[client] = None
        return client, address

    def request_received(self, client: socket.socket) -> None:
        """``client`` has sent its A-ASSOCIATE-RQ: it no longer counts as pending."""
        with self._pending_lock:
            self._pending.pop(client, None)

    def shutdown_request(self, request: Any) -> None:
        self.request_received(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception(
            "error while serving a connection from %s", client_address[0] if client_address else "?"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting; give running associations ``grace_s`` to finish, then abort them."""
        self.shutdown()
        with self._pending_lock:
            pending, self._pending = list(self._pending), {}
        for client in pending:  # not associated yet: nothing to finish
            _shutdown_quietly(client)
        deadline = time.monotonic() + grace_s
        while self.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self.active_associations:
            assoc.abort()
        for assoc in self.active_associations:
            assoc.join(5.0)


def _shutdown_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class SharedPortListenerServer(ListenerServer):
    """One of several receiver processes listening on the same port (``SO_REUSEPORT``)."""

    reuse_port = True
