"""Socket helpers shared by our DICOM SCP and SCU: Nagle off, shared ports and DICOM TLS contexts."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


def enable_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off: without it every small DIMSE response waits ~40 ms for an ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket (e.g. a Unix socket in a test): nothing to tune


def enable_reuse_port(sock: socket.socket) -> None:
    """Let several receiver processes listen on one port; the kernel spreads connections over them."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this platform")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def server_tls_context(cert: Path, key: Path, ca: Path | None = None) -> ssl.SSLContext:
    """TLS for an SCP: our certificate, and when ``ca`` is given, peers must present one signed by it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_tls_context(
    ca: Path, cert: Path | None = None, key: Path | None = None, check_hostname: bool = False
) -> ssl.SSLContext:
    """TLS for an SCU: verify the peer against ``ca`` and present our own certificate when given.

    DICOM nodes are usually addressed by IP and their certificates rarely carry it, so host
    name checking is off unless asked for; the CA check still authenticates the peer.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx
