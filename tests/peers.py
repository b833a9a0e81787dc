"""Real DICOM peers for tests and benchmarks: Orthanc and DCMTK, each fenced in a private network.

Orthanc and DCMTK's ``storescp`` listen on every interface and have no bind-address option, so on
a shared machine they run inside a private network namespace (``ip netns``) joined to ours by a
veth pair with a private /30: our side is ``network.host_ip`` (bind our listeners there so the
peer can reach them, e.g. as a C-MOVE destination), theirs is ``network.peer_ip`` (where our SCU
and the DCMTK tools reach the peer). Nothing else can reach either address, and everything
(processes, namespace, veth) is removed on exit, even on failure.

This needs root (creating namespaces and links). Without it, or without the peer's binary,
the context managers raise :class:`PeerUnavailable`; the fixtures turn that into a skip.

    from tests.peers import orthanc_module  # module-scoped fixture

    def test_x(orthanc_module):
        orthanc_module.add_modality("HULU", "HULU", orthanc_module.network.host_ip, port)
        ...

``orthanc_server(..., dicomweb=True, users={"user": "password"})`` loads Debian's
``orthanc-dicomweb`` plugin (root ``/dicom-web/``, see ``OrthancServer.dicomweb_url``) with HTTP
basic authentication on; :func:`tls_terminator` puts HTTPS in front of it (socat, as a site's
reverse proxy would: Debian's Orthanc 1.10.1 resets its own HTTPS connections after the handshake).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Private /30 networks are drawn from here; 10.213/16 is unlikely to clash with a site's own.
_POOL = ipaddress.ip_network("10.213.0.0/16")
_LOCK_FILE = Path("/run/lock/hulu-test-netns.lock")
_NAME_PREFIX = "hulu"
_PEER_ENV = {"TCP_NODELAY": "1"}  # DCMTK (and Orthanc's DICOM side) stall ~40 ms per C-STORE without it


class PeerUnavailable(RuntimeError):
    """A real peer cannot be started here (not root, binary missing); tests skip on this."""


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=30)


def _peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(_PEER_ENV)
    return env


# ---------------------------------------------------------------------------------------------
# Private network namespace
# ---------------------------------------------------------------------------------------------


@dataclass
class PrivateNetwork:
    """A network namespace reachable only from this machine through one veth pair."""

    name: str
    host_if: str
    host_ip: str
    peer_ip: str
    _next_port: int = 4242

    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def allocate_port(self) -> int:
        """A port free inside the namespace (only our own peers live there)."""
        port = self._next_port
        self._next_port += 1
        return port


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PeerUnavailable(f"{what} needs root to create a private network namespace (ip netns)")
    if shutil.which("ip") is None:
        raise PeerUnavailable(f"{what} needs the 'ip' tool (iproute2)")


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def _remove_stale_namespaces() -> None:
    """Delete namespaces left by test processes that died without cleaning up."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == _NAME_PREFIX and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                _run(["ip", "netns", "pids", name], check=False)
                _run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def private_network() -> Iterator[PrivateNetwork]:
    """Create a namespace + veth pair on a free private /30; remove both on exit."""
    _require_root("a private test network")
    _LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{random.getrandbits(32):08x}"
    name = f"{_NAME_PREFIX}-{os.getpid()}-{tag}"
    host_if, peer_if = f"hh{tag}", f"hp{tag}"
    created_ns = created_link = False
    try:
        with open(_LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _remove_stale_namespaces()
            subnet = _free_subnet()
            host_ip, peer_ip = (str(a) for a in list(subnet.hosts())[:2])
            _run(["ip", "netns", "add", name])
            created_ns = True
            _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if])
            created_link = True
            _run(["ip", "link", "set", peer_if, "netns", name])
            _run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_if])
            _run(["ip", "link", "set", host_if, "up"])
            inside = ["ip", "netns", "exec", name]
            _run([*inside, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if])
            _run([*inside, "ip", "link", "set", peer_if, "up"])
            _run([*inside, "ip", "link", "set", "lo", "up"])
    except subprocess.CalledProcessError as exc:
        _remove_network(name, host_if, created_ns, created_link)
        raise PeerUnavailable(f"cannot create a private network: {exc.stderr.strip()}") from exc
    except BaseException:
        _remove_network(name, host_if, created_ns, created_link)
        raise
    try:
        yield PrivateNetwork(name=name, host_if=host_if, host_ip=host_ip, peer_ip=peer_ip)
    finally:
        _remove_network(name, host_if, created_ns, created_link)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    subnets = list(_POOL.subnets(new_prefix=30))
    for _ in range(200):
        subnet = random.choice(subnets)
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise PeerUnavailable("no free /30 left in the test address pool")


def _remove_network(name: str, host_if: str, created_ns: bool, created_link: bool) -> None:
    """Kill what still runs inside, then delete the veth pair and the namespace."""
    if created_ns:
        for pid in _run(["ip", "netns", "pids", name], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    if created_link:
        _run(["ip", "link", "del", host_if], check=False)
    if created_ns:
        _run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def _network_or_new(network: PrivateNetwork | None) -> Iterator[PrivateNetwork]:
    if network is not None:
        yield network
    else:
        with private_network() as net:
            yield net


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def _wait_port(host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode} before listening:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"peer not listening on {host}:{port} after {timeout} s:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Orthanc
# ---------------------------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DICOMWEB_PLUGIN_DIR = Path("/usr/lib/orthanc")


@dataclass
class OrthancServer:
    """A running Orthanc: DICOM at ``host:dicom_port`` with AE ``aet``, REST at ``http_port``."""

    aet: str
    host: str
    dicom_port: int
    http_port: int
    network: PrivateNetwork
    storage_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)  # HTTP basic user and password

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root of the orthanc-dicomweb plugin (when started with ``dicomweb=True``)."""
        return f"{self.http_url}/dicom-web"

    # -- REST --------------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        """Call the REST API; JSON in and out (bytes out when the answer is not JSON)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"{self.http_url}{path}", data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.auth is not None:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with _NO_PROXY.open(req, timeout=30) as resp:
            payload = resp.read()
            if "json" in resp.headers.get("Content-Type", ""):
                return json.loads(payload) if payload else None
            return payload

    def instance_ids(self) -> list[str]:
        return list(self.rest("GET", "/instances"))

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics")["CountInstances"])

    def study_uids(self) -> list[str]:
        return [
            self.rest("GET", f"/studies/{i}")["MainDicomTags"]["StudyInstanceUID"]
            for i in self.rest("GET", "/studies")
        ]

    def find(self, level: str, query: Mapping[str, str]) -> list[dict]:
        """Orthanc's own lookup (``/tools/find``, expanded): level Patient|Study|Series|Instance."""
        return list(self.rest("POST", "/tools/find", {"Level": level, "Query": dict(query), "Expand": True}))

    def series_sop_uids(self, series_uid: str) -> set[str]:
        """SOP Instance UIDs Orthanc holds for one series."""
        hits = self.find("Instance", {"SeriesInstanceUID": series_uid})
        return {h["MainDicomTags"]["SOPInstanceUID"] for h in hits}

    def instance_tags(self, orthanc_id: str) -> dict:
        return dict(self.rest("GET", f"/instances/{orthanc_id}/simplified-tags"))

    def instance_file(self, orthanc_id: str) -> bytes:
        return bytes(self.rest("GET", f"/instances/{orthanc_id}/file"))

    def upload(self, paths: Sequence[Path]) -> list[str]:
        """Store Part-10 files through REST (not DICOM); returns Orthanc instance ids."""
        return [self.rest("POST", "/instances", raw=Path(p).read_bytes())["ID"] for p in paths]

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Make a remote AE known (allowed to query/retrieve, usable as C-MOVE destination)."""
        self.rest("PUT", f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port})

    def remove_modality(self, name: str) -> None:
        self.rest("DELETE", f"/modalities/{name}")

    def clear(self) -> None:
        """Delete every patient (and so every instance)."""
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")


def _orthanc_config(
    tmp: Path,
    aet: str,
    dicom_port: int,
    http_port: int,
    modalities: Mapping[str, tuple[str, str, int]],
    tls: Mapping[str, str] | None,
    plugins: Sequence[str] = (),
    users: Mapping[str, str] | None = None,
) -> dict:
    config: dict[str, Any] = {
        "Name": "hulu-test-orthanc",
        "StorageDirectory": str(tmp / "storage"),
        "IndexDirectory": str(tmp / "index"),
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "DicomCheckCalledAet": True,
        "RemoteAccessAllowed": True,  # the REST client is our side of the veth pair, nothing else
        "AuthenticationEnabled": False,
        "DicomModalities": {name: list(v) for name, v in modalities.items()},
        "DicomAssociationCloseDelay": 0,
        "DicomScuTimeout": 10,
        "SaveJobs": False,
        "Plugins": list(plugins),
        "StableAge": 2,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 8,
        "DeidentifyLogs": True,
    }
    if plugins:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
    if users:
        config.update({"AuthenticationEnabled": True, "RegisteredUsers": dict(users)})
    if tls:
        config.update(
            {
                "DicomTlsEnabled": True,
                "DicomTlsCertificate": tls["cert"],
                "DicomTlsPrivateKey": tls["key"],
                "DicomTlsTrustedCertificates": tls["ca"],
                "DicomTlsRemoteCertificateRequired": bool(tls.get("require_client_cert", True)),
            }
        )
    return config


@contextlib.contextmanager
def orthanc_server(
    tmp_path: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, tuple[str, str | None, int] | tuple[str | None, int]] | None = None,
    network: PrivateNetwork | None = None,
    tls: Mapping[str, str] | None = None,
    dicomweb: bool = False,
    users: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[OrthancServer]:
    """Run Orthanc in a private namespace for the duration of the ``with`` block.

    ``modalities`` maps a name to ``(aet, host, port)``, or an AE title to ``(host, port)``; a
    host of ``None`` means our side of the veth pair (``network.host_ip``), where a test's own
    listener should bind. Modalities can
    also be added later with :meth:`OrthancServer.add_modality`. ``tls`` (``cert``, ``key``,
    ``ca`` paths, optional ``require_client_cert``) switches its DICOM port to TLS only.
    ``dicomweb`` loads the orthanc-dicomweb plugin; ``users`` (name -> password) turns HTTP basic
    authentication on.
    """
    binary = shutil.which("Orthanc")
    if binary is None:
        raise PeerUnavailable("Orthanc is not installed (Debian package 'orthanc')")
    plugins = []
    if dicomweb:
        found = sorted(_DICOMWEB_PLUGIN_DIR.glob("libOrthancDicomWeb.so*"))
        if not found:
            raise PeerUnavailable("the Orthanc DICOMweb plugin is not installed (Debian 'orthanc-dicomweb')")
        plugins.append(str(found[-1]))
    _require_root("Orthanc")
    tmp = Path(tmp_path) / f"orthanc-{random.getrandbits(24):06x}"
    tmp.mkdir(parents=True)

    with _network_or_new(network) as net:
        dicom_port, http_port = net.allocate_port(), net.allocate_port()
        mods = {}
        for name, entry in (modalities or {}).items():
            aet, host, port = entry if len(entry) == 3 else (name, *entry)
            mods[name] = (aet, host if host is not None else net.host_ip, port)
        config_path = tmp / "orthanc.json"
        config_path.write_text(
            json.dumps(
                _orthanc_config(tmp, aet, dicom_port, http_port, mods, tls, plugins, users),
                indent=1,
            )
        )
        log_path = tmp / "orthanc.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*net.exec_prefix(), binary, str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_peer_env(),
                cwd=tmp,
            )
        try:
            server = OrthancServer(
                aet=aet,
                host=net.peer_ip,
                dicom_port=dicom_port,
                http_port=http_port,
                network=net,
                storage_dir=tmp / "storage",
                log_path=log_path,
                process=proc,
                auth=next(iter(users.items())) if users else None,
            )
            _wait_orthanc_ready(server, timeout)
            yield server
        finally:
            _stop(proc, timeout=5.0)


def _wait_orthanc_ready(server: OrthancServer, timeout: float) -> None:
    _wait_port(server.host, server.http_port, server.process, server.log_path, timeout)
    _wait_port(server.host, server.dicom_port, server.process, server.log_path, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.rest("GET", "/system")
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc REST not ready:\n{_tail(server.log_path)}") from None
            time.sleep(0.02)


@contextlib.contextmanager
def tls_terminator(tmp_path: Path, server: OrthancServer, material: TlsMaterial) -> Iterator[str]:
    """HTTPS in front of ``server``'s HTTP port (``socat``, inside its namespace, with
    ``material``'s server certificate); yields the base URL, e.g. ``https://10.213.0.2:4250``."""
    binary = shutil.which("socat")
    if binary is None:
        raise PeerUnavailable("socat is not installed (Debian package 'socat')")
    port = server.network.allocate_port()
    log_path = Path(tmp_path) / f"socat-{port}.log"
    listen = (
        f"OPENSSL-LISTEN:{port},reuseaddr,fork,cert={material.server_cert},key={material.server_key},verify=0"
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*server.network.exec_prefix(), binary, listen, f"TCP:127.0.0.1:{server.http_port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_port(server.host, port, proc, log_path, 10.0)
        yield f"https://{server.host}:{port}"
    finally:
        _stop(proc, timeout=3.0)


# ---------------------------------------------------------------------------------------------
# DCMTK
# ---------------------------------------------------------------------------------------------


@dataclass
class StoreScp:
    """A running DCMTK storescp writing what it receives into ``output_dir``.

    Reach it at ``host:port`` from this process; a peer in the same namespace (e.g. Orthanc
    started with the same ``network``) reaches it at ``127.0.0.1:port``.
    """

    aet: str
    host: str
    port: int
    output_dir: Path
    network: PrivateNetwork
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def files(self) -> list[Path]:
        return sorted(p for p in self.output_dir.iterdir() if p.is_file())


@contextlib.contextmanager
def dcmtk_storescp(
    tmp_path: Path,
    aet: str = "STORESCP",
    port: int | None = None,
    *,
    network: PrivateNetwork | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 10.0,
) -> Iterator[StoreScp]:
    """Run ``storescp`` (all transfer syntaxes accepted) in a private namespace."""
    binary = shutil.which("storescp")
    if binary is None:
        raise PeerUnavailable("DCMTK storescp is not installed (Debian package 'dcmtk')")
    _require_root("storescp")
    out = Path(tmp_path) / f"storescp-{random.getrandbits(24):06x}"
    out.mkdir(parents=True)
    with _network_or_new(network) as net:
        port = port or net.allocate_port()
        log_path = out.with_suffix(".log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    *net.exec_prefix(),
                    binary,
                    "-aet",
                    aet,
                    "-od",
                    str(out),
                    "+xa",
                    "-dhl",
                    "-pdu",
                    "131072",
                    *extra_args,
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_peer_env(),
            )
        try:
            _wait_port(net.peer_ip, port, proc, log_path, timeout)
            yield StoreScp(
                aet=aet,
                host=net.peer_ip,
                port=port,
                output_dir=out,
                network=net,
                log_path=log_path,
                process=proc,
            )
        finally:
            _stop(proc, timeout=3.0)


def run_dcmtk(tool: str, *args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with TCP_NODELAY=1; never raises on a non-zero exit (check ``returncode``)."""
    binary = shutil.which(tool)
    if binary is None:
        raise PeerUnavailable(f"DCMTK {tool} is not installed (Debian package 'dcmtk')")
    return subprocess.run(
        [binary, *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env=_peer_env(),
        timeout=timeout,
    )


def run_storescu(
    files: Sequence[Path], host: str, port: int, called_aet: str, calling_aet: str = "STORESCU", *extra: str
) -> subprocess.CompletedProcess[str]:
    """Send files with ``storescu`` (one association, every SOP class in the files proposed)."""
    return run_dcmtk(
        "storescu", "-aet", calling_aet, "-aec", called_aet, "+sd", *extra, host, str(port), *map(str, files)
    )


def run_echoscu(
    host: str, port: int, called_aet: str, calling_aet: str = "ECHOSCU", *extra: str
) -> subprocess.CompletedProcess[str]:
    """Verify a peer with ``echoscu``."""
    return run_dcmtk("echoscu", "-aet", calling_aet, "-aec", called_aet, *extra, host, str(port), timeout=30)


# ---------------------------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------------------------


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")  # fast to make, unlike RSA


@dataclass(frozen=True)
class TlsMaterial:
    """A throw-away CA with one server and one client certificate it signed (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_material(folder: Path, server_ips: Sequence[str] = ("127.0.0.1",)) -> TlsMaterial:
    """Create CA, server and client certificates with the ``openssl`` tool (ECDSA P-256, 2 days)."""
    if shutil.which("openssl") is None:
        raise PeerUnavailable("the openssl tool is not installed (Debian package 'openssl')")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    openssl(
        "req",
        "-x509",
        *_EC_KEY,
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=Hulu test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    for role, san in (("server", ",".join(f"IP:{ip}" for ip in server_ips)), ("client", "DNS:hulu-client")):
        key, csr, cert, ext = (folder / f"{role}.{s}" for s in ("key", "csr", "crt", "ext"))
        openssl(
            "req", *_EC_KEY, "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN=hulu-test-{role}"
        )
        usage = "serverAuth" if role == "server" else "clientAuth"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_cert),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            "2",
            "-extfile",
            str(ext),
        )
    return TlsMaterial(
        ca_cert, folder / "server.crt", folder / "server.key", folder / "client.crt", folder / "client.key"
    )


# ---------------------------------------------------------------------------------------------
# Fixtures (import them into a test module: ``from tests.peers import orthanc_module``)
# ---------------------------------------------------------------------------------------------


def _skip_if_unavailable(stack: contextlib.ExitStack, cm: contextlib.AbstractContextManager) -> Any:
    """Enter ``cm`` on ``stack``; a PeerUnavailable during start-up becomes a pytest skip."""
    try:
        return stack.enter_context(cm)
    except PeerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def peer_network() -> Iterator[PrivateNetwork]:
    """One private network for a test module (skips without root)."""
    with contextlib.ExitStack() as stack:
        yield _skip_if_unavailable(stack, private_network())


@pytest.fixture(scope="module")
def orthanc_module(
    tmp_path_factory: pytest.TempPathFactory, peer_network: PrivateNetwork
) -> Iterator[OrthancServer]:
    """One Orthanc per test module in ``peer_network`` (call ``clear()`` between tests as needed)."""
    with contextlib.ExitStack() as stack:
        yield _skip_if_unavailable(
            stack, orthanc_server(tmp_path_factory.mktemp("orthanc"), network=peer_network)
        )


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    """A fresh Orthanc in its own private network for one test."""
    with contextlib.ExitStack() as stack:
        yield _skip_if_unavailable(stack, orthanc_server(tmp_path))


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreScp]:
    """A fresh DCMTK storescp (AE ``STORESCP``) in its own private network for one test."""
    with contextlib.ExitStack() as stack:
        yield _skip_if_unavailable(stack, dcmtk_storescp(tmp_path))
