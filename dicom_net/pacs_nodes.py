"""The PACS nodes the workstation talks to, kept in ``config_dir()/pacs_nodes.json``.

A node is either a remote DICOM application entity (:class:`PacsNode`: AE title, host, port,
optional TLS, our calling AE title, C-MOVE or C-GET) or a DICOMweb service (:class:`DicomWebNode`:
base URL, HTTP basic user or bearer-token file, optional CA file). Every field is validated when a
node is made, so a bad entry is refused with a clear message before it is saved; the file is
written atomically and a damaged file is reported, never silently replaced.

Secrets never go into the nodes file: a DICOMweb password lives in ``pacs_secrets.json`` beside
it (mode 0600, see :class:`PacsSecrets`) and is attached to the node in memory when loaded; a
bearer token stays in the file the user named (read at each use, so it can be rotated).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from dicom_net.atomic import write_bytes_atomic
from dicom_net.paths import config_dir

RETRIEVE_METHODS = ("move", "get")
# Same as the listener's default AE title: one entry in the PACS then allows our queries and
# names the destination that C-MOVE sends to.
DEFAULT_CALLING_AET = "HULUWS"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DICOMWEB = "dicomweb"  # the "kind" of a DICOMweb node in the nodes file (DIMSE nodes have none)
_FILE_VERSION = 1


class PacsNodeError(ValueError):
    """A node definition or the nodes file is invalid."""


class UnknownNodeError(KeyError):
    """No node of that name is configured."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is meant for people
        return str(self.args[0])


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PacsNodeError(
            f"node name {name!r} must start with a letter or digit and hold only letters, digits, "
            "'_', '.', '-' (at most 64)"
        )


def _check_timeout(timeout_s: object) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 3600:
        raise PacsNodeError(f"timeout {timeout_s!r} must be between 0 and 3600 seconds")


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
        _check_name(self.name)
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
        _check_timeout(self.timeout_s)

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


@dataclass(frozen=True)
class DicomWebNode:
    """A DICOMweb service (QIDO-RS, WADO-RS, STOW-RS) under one base URL.

    ``url`` is the service root, e.g. ``https://pacs.example.org/dicom-web``. Authentication is
    HTTP basic (``user`` plus ``password``, which is kept in :class:`PacsSecrets`, never in the
    nodes file) or a bearer token read from ``token_file`` at each use. ``tls_ca`` is the CA
    file that signed the server's certificate (default: the system's CAs). ``timeout_s`` bounds
    every request (connecting, and each wait for data).
    """

    name: str
    url: str
    user: str | None = None
    token_file: str | None = None
    tls_ca: str | None = None
    timeout_s: float = 30.0
    password: str | None = field(default=None, repr=False, compare=False)  # in memory only

    kind = DICOMWEB

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_timeout(self.timeout_s)
        url = self.url.strip().rstrip("/") if isinstance(self.url, str) else ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise PacsNodeError(
                f"DICOMweb URL {self.url!r} must be http(s)://host[:port][/path], e.g. "
                "https://pacs.example.org/dicom-web"
            )
        if parts.username or parts.password:
            raise PacsNodeError("put the user in --user, never in the DICOMweb URL")
        object.__setattr__(self, "url", url)
        if self.user is not None and (not self.user.strip() or ":" in self.user):
            raise PacsNodeError(f"user {self.user!r} must be non-empty and hold no ':'")
        if self.user and self.token_file:
            raise PacsNodeError("give either a user (HTTP basic) or a token file (bearer), not both")
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise PacsNodeError(f"token file not found: {self.token_file}")
        if self.tls_ca is not None:
            if parts.scheme != "https":
                raise PacsNodeError("a TLS CA file needs an https:// URL")
            if not Path(self.tls_ca).is_file():
                raise PacsNodeError(f"TLS CA certificate file not found: {self.tls_ca}")

    @property
    def retrieve_method(self) -> str:
        return "wado-rs"

    def describe(self) -> str:
        """Where the node is and how we authenticate (never the secret itself)."""
        auth = f"user {self.user}" if self.user else "bearer token file" if self.token_file else "no auth"
        return f"DICOMweb {self.url} ({auth}{', own CA' if self.tls_ca else ''})"

    def to_json(self) -> dict[str, Any]:
        data = {"kind": DICOMWEB, **asdict(self)}
        data.pop("password")
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DicomWebNode:
        known = {"kind", "name", "url", "user", "token_file", "tls_ca", "timeout_s"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PacsNodeError(f"node {data.get('name')!r} has unknown field(s): {', '.join(unknown)}")
        missing = sorted({"name", "url"} - set(data))
        if missing:
            raise PacsNodeError(f"node {data.get('name')!r} lacks field(s): {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k != "kind"})


AnyNode: TypeAlias = PacsNode | DicomWebNode


def node_from_json(data: Any) -> AnyNode:
    """A node of either kind from its nodes-file entry."""
    if isinstance(data, dict) and data.get("kind") == DICOMWEB:
        return DicomWebNode.from_json(data)
    return PacsNode.from_json(data)


class PacsSecrets:
    """DICOMweb passwords by node name in one JSON file readable by its owner only (0600).

    The file is written atomically through a temp file created with mode 0600, so the secret is
    never readable by others, not even for a moment; a file others can read is refused.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return {}
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PacsNodeError(f"{self.path} is readable by others: run chmod 600 on it")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PacsNodeError(f"{self.path} is not valid JSON; fix or remove it") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise PacsNodeError(f"{self.path} must map node names to passwords")
        return data

    def get(self, name: str) -> str | None:
        return self._load().get(name)

    def set(self, name: str, password: str) -> None:
        secrets = self._load()
        secrets[name] = password
        self._save(secrets)

    def remove(self, name: str) -> None:
        secrets = self._load()
        if secrets.pop(name, None) is not None:
            self._save(secrets)

    def _save(self, secrets: dict[str, str]) -> None:
        write_bytes_atomic(self.path, json.dumps(secrets, indent=1).encode("utf-8") + b"\n")
        os.chmod(self.path, 0o600)  # mkstemp made it 0600 already; say so explicitly


def nodes_file() -> Path:
    return config_dir() / "pacs_nodes.json"


class PacsNodes:
    """The configured nodes, read from and saved to one JSON file (passwords in a file beside it)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else nodes_file()
        self.secrets = PacsSecrets(self.path.with_name("pacs_secrets.json"))

    def load(self) -> dict[str, AnyNode]:
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
        nodes: dict[str, AnyNode] = {}
        for entry in data["nodes"]:
            node = node_from_json(entry)
            if node.name in nodes:
                raise PacsNodeError(f"{self.path} defines node {node.name!r} twice")
            if isinstance(node, DicomWebNode) and node.user:
                node = replace(node, password=self.secrets.get(node.name))
            nodes[node.name] = node
        return nodes

    def get(self, name: str) -> AnyNode:
        nodes = self.load()
        if name not in nodes:
            known = ", ".join(sorted(nodes)) or "none configured"
            raise UnknownNodeError(f"unknown PACS node {name!r} (known: {known})")
        return nodes[name]

    def add(self, node: AnyNode, *, replace: bool = False) -> None:
        """Save ``node``; a DICOMweb node's ``password`` goes to the secrets file (none: removed)."""
        nodes = self.load()
        if node.name in nodes and not replace:
            raise PacsNodeError(f"node {node.name!r} already exists (use replace to change it)")
        if isinstance(node, DicomWebNode) and node.user and node.password:
            self.secrets.set(node.name, node.password)
        else:
            self.secrets.remove(node.name)
        nodes[node.name] = node
        self._save(nodes)

    def remove(self, name: str) -> AnyNode:
        nodes = self.load()
        if name not in nodes:
            raise UnknownNodeError(f"unknown PACS node {name!r}")
        node = nodes.pop(name)
        self._save(nodes)
        self.secrets.remove(name)
        return node

    def _save(self, nodes: dict[str, AnyNode]) -> None:
        payload = {
            "version": _FILE_VERSION,
            "nodes": [n.to_json() for n in sorted(nodes.values(), key=lambda n: n.name)],
        }
        write_bytes_atomic(self.path, json.dumps(payload, indent=2).encode("utf-8") + b"\n")
