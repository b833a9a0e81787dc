"""Socket helpers shared by our DICOM SCP and SCU: Nagle off, shared ports, who holds a port,
and DICOM TLS contexts."""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from pathlib import Path

import psutil


class PortInUse(OSError):
    """The listening port is taken; the message names the process holding it where it can be seen."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, describe_port_holders(host, port))
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


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


def _overlaps(bound_ip: str, host: str) -> bool:
    try:
        a, b = ipaddress.ip_address(bound_ip.split("%")[0]), ipaddress.ip_address(host)
    except ValueError:
        return True  # a name we cannot compare: assume it may be the same address
    return a.is_unspecified or b.is_unspecified or a == b


def port_holders(host: str, port: int) -> list[int | None]:
    """Processes listening on TCP ``port`` where a listener on ``host`` would also listen;
    None for a listener whose process is not visible to us (another user's)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    return [
        c.pid
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and _overlaps(c.laddr.ip, host)
    ]


def describe_port_holders(host: str, port: int) -> str:
    """``'port 11112 is in use by process 4242 (storescp)'``, or as much of it as can be seen."""
    pids = sorted({pid for pid in port_holders(host, port) if pid})
    if not pids:
        return f"port {port} is in use by another program"
    named = []
    for pid in pids[:3]:
        try:
            named.append(f"{pid} ({psutil.Process(pid).name()})")
        except psutil.Error:
            named.append(str(pid))
    return f"port {port} is in use by process{'es' if len(pids) > 1 else ''} {', '.join(named)}"


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
