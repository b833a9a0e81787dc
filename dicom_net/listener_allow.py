"""The listener's allow-list of calling AE titles, optionally tied to hosts (``AET`` or ``AET@HOST``).

A host may be an IP address or a name; names are resolved (all their addresses, IPv4 and IPv6)
when the list is built and again when the answer is older than ``ttl_s``, so a modality whose
address changes in DNS is followed. A name that does not resolve matches nothing and is logged.
Addresses are compared as addresses, so ``::ffff:10.0.0.5`` (a dual-stack socket) is ``10.0.0.5``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

DNS_TTL_S = 300.0
DNS_RETRY_S = 30.0  # a name that did not resolve is tried again this soon


@dataclass(frozen=True)
class AllowRule:
    aet: str
    host: str | None  # as written; None: any host


def parse_allow(entries: list[str]) -> list[AllowRule]:
    """``['PACS', 'CT1@ct1.hospital']`` -> rules; a blank or over-long AE title is a ValueError."""
    rules = []
    for entry in entries:
        aet, _, host = entry.partition("@")
        if not aet.strip() or len(aet.strip()) > 16:
            raise ValueError(f"invalid AE title in allow-list entry {entry!r}")
        rules.append(AllowRule(aet.strip(), host.strip() or None))
    return rules


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class AllowList:
    """Which (calling AE title, peer address) pairs may associate; empty: everyone."""

    def __init__(self, entries: list[str], ttl_s: float = DNS_TTL_S) -> None:
        self.rules = parse_allow(entries)
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, frozenset]] = {}  # host -> (valid until, addresses)
        for rule in self.rules:
            if rule.host is not None and _address(rule.host) is None:
                self._addresses(rule.host)  # resolve now, so a bad name is logged at start

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, calling_aet: str, peer_address: str) -> bool:
        if not self.rules:
            return True
        peer = _address(peer_address)
        for rule in self.rules:
            if rule.aet != calling_aet:
                continue
            if rule.host is None or (peer is not None and peer in self._addresses(rule.host)):
                return True
        return False

    def _addresses(self, host: str) -> frozenset:
        literal = _address(host)
        if literal is not None:
            return frozenset({literal})
        with self._lock:
            cached = self._resolved.get(host)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
                found = frozenset(a for a in (_address(str(i[4][0])) for i in infos) if a is not None)
            except (OSError, UnicodeError) as exc:
                log.warning("allow-list host %r does not resolve (%s): it matches no peer", host, exc)
                found = frozenset()
            self._resolved[host] = (time.monotonic() + (self.ttl_s if found else DNS_RETRY_S), found)
            return found
