"""The PACS nodes the workstation talks to, kept in ``config_dir()/pacs_nodes.json``.

A node is a remote DICOM application entity (AE title, host, port, optional TLS) plus how we
present ourselves to it (our calling AE title, which the PACS must know) and how we retrieve
from it (C-MOVE to our listener, or C-GET over the query association). Every field is validated
when a node is made, so a bad entry is refused with a clear message before it is saved; the
file is written atomically and a damaged file is reported, never silently replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dicom_net.atomic import write_bytes_atomic
from dicom_net.paths import config_dir

RETRIEVE_METHODS = ("move", "get")
# Same as the listener's default AE title: one entry in the PACS then allows our queries and
# names the destination that C-MOVE sends to.
DEFAULT_CALLING_AET = "HULUWS"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FILE_VERSION = 1


class PacsNodeError(ValueError):
    """A node definition or the nodes file is invalid."""


class UnknownNodeError(KeyError):
    """No node of that name is configured."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant for people
        return str(self.args[0])


def validate_ae_title(value: str, what: str = "AE title") -> str:
    """Return ``value`` if it is a valid DICOM AE title (1-16 printable ASCII, no backslash)."""
    if not isinstance(value, str):
        raise PacsNodeError(f"{what} must be text, got {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise PacsNodeError(f"{what} must not be empty")
    if len(stripped) > 16:
        raise PacsNodeError(f"{what} {stripped!r} is longer than 16 characters")
    if any(not (0x20 <= ord(c) < 0x7F) or c == "\\" for c in stripped):
        raise PacsNodeError(f"{what} {stripped!r} may hold only printable ASCII without backslash")
    return stripped


@dataclass(frozen=True)
class TlsSettings:
    """DICOM TLS: the CA that signed the PACS certificate, and our own certificate for mutual TLS."""

    ca: str
    cert: str | None = None
    key: str | None = None
    check_hostname: bool = False  # hospital PACS certificates rarely name the host we dial

    def __post_init__(self) -> None:
        if not self.ca:
            raise PacsNodeError("TLS needs a CA certificate file (ca)")
        if (self.cert is None) != (self.key is None):
            raise PacsNodeError("TLS client certificate and key must be given together")
        for label, path in (
            ("CA certificate", self.ca),
            ("certificate", self.cert),
            ("private key", self.key),
        ):
            if path is not None and not Path(path).is_file():
                raise PacsNodeError(f"TLS {label} file not found: {path}")


@dataclass(frozen=True)
class PacsNode:
    """A remote DICOM node and how we talk to it."""

    name: str
    aet: str
    host: str
    port: int
    calling_aet: str = DEFAULT_CALLING_AET
    retrieve_method: str = "move"
    tls: TlsSettings | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise PacsNodeError(
                f"node name {self.name!r} must start with a letter or digit and hold only letters, digits, "
                "'_', '.', '-' (at most 64)"
            )
        object.__setattr__(self, "aet", validate_ae_title(self.aet, "PACS AE title"))
        object.__setattr__(self, "calling_aet", validate_ae_title(self.calling_aet, "calling AE title"))
        if (
            not isinstance(self.host, str)
            or not self.host.strip()
            or any(c.isspace() for c in self.host.strip())
        ):
            raise PacsNodeError(f"host {self.host!r} must be a host name or IP address")
        object.__setattr__(self, "host", self.host.strip())
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise PacsNodeError(f"port {self.port!r} must be a whole number from 1 to 65535")
        if self.retrieve_method not in RETRIEVE_METHODS:
            raise PacsNodeError(
                f"retrieve method {self.retrieve_method!r} must be one of {', '.join(RETRIEVE_METHODS)}"
            )
        if not isinstance(self.timeout_s, (int, float)) or not 0 < self.timeout_s <= 3600:
            raise PacsNodeError(f"timeout {self.timeout_s!r} must be between 0 and 3600 seconds")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.tls is None:
            data.pop("tls")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PacsNode:
        if not isinstance(data, dict):
            raise PacsNodeError(f"a node must be a JSON object, got {type(data).__name__}")
        known = {"name", "aet", "host", "port", "calling_aet", "retrieve_method", "tls", "timeout_s"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PacsNodeError(f"node {data.get('name')!r} has unknown field(s): {', '.join(unknown)}")
        missing = sorted({"name", "aet", "host", "port"} - set(data))
        if missing:
            raise PacsNodeError(f"node {data.get('name')!r} lacks field(s): {', '.join(missing)}")
        tls = data.get("tls")
        if tls is not None:
            if not isinstance(tls, dict) or not set(tls) <= {"ca", "cert", "key", "check_hostname"}:
                raise PacsNodeError(f"node {data['name']!r}: tls must be an object with ca, cert, key")
            tls = TlsSettings(**tls)
        return cls(**{**data, "tls": tls})


def nodes_file() -> Path:
    return config_dir() / "pacs_nodes.json"


class PacsNodes:
    """The configured nodes, read from and saved to one JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else nodes_file()

    def load(self) -> dict[str, PacsNode]:
        """All nodes by name; an absent file means none. A damaged file raises PacsNodeError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PacsNodeError(f"{self.path} is not valid JSON ({exc}); fix or remove it") from exc
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise PacsNodeError(f"{self.path} must hold an object with a 'nodes' list")
        nodes: dict[str, PacsNode] = {}
        for entry in data["nodes"]:
            node = PacsNode.from_json(entry)
            if node.name in nodes:
                raise PacsNodeError(f"{self.path} defines node {node.name!r} twice")
            nodes[node.name] = node
        return nodes

    def get(self, name: str) -> PacsNode:
        nodes = self.load()
        if name not in nodes:
            known = ", ".join(sorted(nodes)) or "none configured"
            raise UnknownNodeError(f"unknown PACS node {name!r} (known: {known})")
        return nodes[name]

    def add(self, node: PacsNode, *, replace: bool = False) -> None:
        nodes = self.load()
        if node.name in nodes and not replace:
            raise PacsNodeError(f"node {node.name!r} already exists (use replace to change it)")
        nodes[node.name] = node
        self._save(nodes)

    def remove(self, name: str) -> PacsNode:
        nodes = self.load()
        if name not in nodes:
            raise UnknownNodeError(f"unknown PACS node {name!r}")
        node = nodes.pop(name)
        self._save(nodes)
        return node

    def _save(self, nodes: dict[str, PacsNode]) -> None:
        payload = {
            "version": _FILE_VERSION,
            "nodes": [n.to_json() for n in sorted(nodes.values(), key=lambda n: n.name)],
        }
        write_bytes_atomic(self.path, json.dumps(payload, indent=2).encode("utf-8") + b"\n")
