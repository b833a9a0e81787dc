"""A ``dicomweb-client`` session for a DICOMweb node: authentication, TLS, deadlines, and errors
that name the HTTP status and what to check.

Messages carry the node's base URL but never a request's query string (QIDO filters hold patient
names and IDs) nor a secret.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
import urllib3
from dicomweb_client.api import DICOMwebClient

from dicom_net.pacs_nodes import DicomWebNode, PacsNodeError
from dicom_net.scu_assoc import AssociationRejected, PacsConnectionError, PacsError, PacsTimeout

log = logging.getLogger(__name__)
# dicomweb-client logs each request's URL at DEBUG, and a QIDO URL holds the search keys (patient
# names, IDs): keep that logger at INFO or above whatever the application's level.
_library_log = logging.getLogger("dicomweb_client")
_library_log.setLevel(max(_library_log.getEffectiveLevel(), logging.INFO))

CONNECT_TIMEOUT_S = 10.0
CHUNK_BYTES = 1 << 20  # streamed reads and chunked uploads

# What to check, per HTTP status (the rest get a generic hint by class).
_HINTS = {
    400: "the server could not use the request: see its log",
    401: "check the user and password, or the token (credentials were refused or not sent)",
    403: "the server knows these credentials but does not allow this: check the user's permissions",
    404: "check the URL and its path prefix (e.g. http://host:8042/dicom-web), and that the object exists",
    406: "the server cannot answer in a form we accept (DICOM)",
    409: "the server refused some objects (see the per-object statuses)",
    413: "the request is too large for the server: send fewer objects at a time",
    415: "the server does not accept DICOM objects here (is this the STOW-RS root?)",
}


# RFC 3986 allows these raw in a query; dicomweb-client percent-encodes them, and Orthanc's
# DICOMweb plugin (1.7, Debian 12) does not decode query values: "PatientName=%2Ademo%2A" found
# nothing where "*demo*" matches. Sending them raw means the same to every server.
_RAW_IN_QUERY = re.compile(r"%(2A|3F|2C)", re.IGNORECASE)


class _Session(requests.Session):
    """A session that sends the wildcard characters ``*`` and ``?`` (and ``,``) of QIDO-RS
    query values as themselves rather than percent-encoded."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        if request.url and "?" in request.url:
            base, _, query = request.url.partition("?")
            request.url = f"{base}?{_RAW_IN_QUERY.sub(lambda m: chr(int(m.group(1), 16)), query)}"
        return super().send(request, **kwargs)


class DicomWebError(PacsError):
    """A DICOMweb request failed; ``http_status`` is the server's answer (None: no answer)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        PacsError.__init__(self, message)  # not super(): AssociationRejected follows in a subclass's MRO
        self.http_status = http_status


class DicomWebRefused(DicomWebError, AssociationRejected):
    """The server refused the request (HTTP 4xx: credentials, URL, permissions). Retrying the same
    request will not help, as with a rejected association."""

    def __init__(self, message: str, http_status: int) -> None:
        DicomWebError.__init__(self, message, http_status)
        self.reason = f"HTTP {http_status}"


def _bearer_token(node: DicomWebNode) -> str:
    assert node.token_file is not None
    try:
        token = Path(node.token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PacsNodeError(f"node {node.name}: cannot read its token file ({exc.strerror})") from exc
    if not token or any(c.isspace() for c in token):
        raise PacsNodeError(f"node {node.name}: its token file must hold one token on one line")
    return token


def open_client(
    node: DicomWebNode, on_response: Callable[[requests.Response], None] | None = None
) -> DICOMwebClient:
    """A client for ``node``: its credentials and CA, one attempt per request, each with a deadline
    (``node.timeout_s`` for every wait for data). ``on_response`` sees each response as its headers
    arrive (a streamed body can then be closed from another thread)."""
    session = _Session()
    if node.user:
        if not node.password:
            raise PacsNodeError(
                f"node {node.name} has user {node.user} but no stored password: add it again with "
                "--password-stdin --replace"
            )
        session.auth = (node.user, node.password)
    elif node.token_file:
        session.headers["Authorization"] = f"Bearer {_bearer_token(node)}"
    if node.tls_ca:
        # requests lets REQUESTS_CA_BUNDLE from the environment override session.verify: read the
        # environment's proxies ourselves and trust exactly the node's CA
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(node.url)
        session.verify = node.tls_ca

    def hook(response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        if on_response is not None:
            on_response(response)
        return response

    client = DICOMwebClient(
        url=node.url,
        session=session,
        callback=hook,
        chunk_size=CHUNK_BYTES,
        timeout=(min(CONNECT_TIMEOUT_S, node.timeout_s), node.timeout_s),
    )
    client.set_http_retry_params(retry=False)  # one attempt: each wait keeps its own deadline
    return client


def _tls_reason(exc: BaseException) -> str:
    """The TLS library's own words (e.g. 'certificate verify failed: self-signed certificate')."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current.strerror or "handshake failed")
        todo.extend(
            [
                current.__cause__,
                current.__context__,
                *(a for a in current.args if isinstance(a, BaseException)),
            ]
        )
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return "handshake failed"


def http_error(node: DicomWebNode, what: str, exc: BaseException) -> PacsError:
    """The PacsError for a failed request ``what`` (e.g. 'QIDO-RS study query') to ``node``."""
    where = f"{what} on {node.name} ({node.url})"
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsConnectionError(
            f"{where}: TLS failed ({_tls_reason(exc)}): check the CA file (--tls-ca) names the CA that "
            "signed the server's certificate, and that the URL's host is the one in that certificate"
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return PacsTimeout(f"{where}: no connection within {min(CONNECT_TIMEOUT_S, node.timeout_s):g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        # a streamed body reports its read deadline and a dropped connection as ConnectionError
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            return PacsTimeout(f"{where}: no answer within {node.timeout_s:g} s")
        if isinstance(cause, urllib3.exceptions.ProtocolError):
            return PacsConnectionError(f"{where}: the server closed the connection during the transfer")
        return PacsConnectionError(f"{where}: cannot connect (check the host and port in the URL)")
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsTimeout(f"{where}: no answer within {node.timeout_s:g} s")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        text = f"{status} {exc.response.reason}".strip()
        if 400 <= status < 500:
            hint = _HINTS.get(status, "the server refused the request")
            return DicomWebRefused(f"{where}: HTTP {text}: {hint}", status)
        return DicomWebError(f"{where}: HTTP {text}: the server failed; see its log", status)
    if isinstance(exc, requests.exceptions.RequestException):
        return DicomWebError(f"{where}: {type(exc).__name__}")
    return DicomWebError(f"{where}: unexpected answer ({type(exc).__name__}: {exc})")


@contextlib.contextmanager
def http_errors(node: DicomWebNode, what: str) -> Iterator[None]:
    """Turn ``requests`` and ``dicomweb-client`` failures inside the block into PacsErrors."""
    try:
        yield
    except PacsError:
        raise
    except (requests.exceptions.RequestException, ValueError) as exc:
        error = http_error(node, what, exc)
        log.warning("%s failed: %s", what, type(error).__name__)
        raise error from None
