"""Workstation settings as plain, validated values (no Qt): parse a whole form or refuse it.

The settings dialog collects every field as text and calls :func:`parse_settings`; either all
values are valid and a new :class:`AppSettings` is returned, or :class:`SettingsError` names every
bad field and nothing is applied. Storage lives in :mod:`app.services.settings_store`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE VR: 16 chars, no backslash
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-:]{0,252})$")
HL7_NAME_RE = re.compile(r"^[^|^~\\&\r\n]{1,180}$")  # must not contain HL7 delimiters

DEVICES = ("auto", "cuda", "cpu")
# auto: bf16 when the GPU holds it, else NF4; CPU: none. The rest: inference.quantization.QUANTIZATIONS
QUANTIZATIONS = ("auto", "none", "int8", "nf4", "int4")


@dataclass(frozen=True)
class ListenerSettings:
    """Our C-STORE SCP: the called AE title, port, allowed calling AEs, optional TLS files."""

    aet: str = "HULUWS"
    port: int = 11112
    host: str = "127.0.0.1"  # bind address: 0.0.0.0 to receive from modalities on the network
    allowed_aets: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # TLS without a CA authenticates no client: only with this explicit choice (listener's --tls-no-client-auth)
    tls_no_client_auth: bool = False
    acse_timeout: int = 30  # seconds a connection has to send its whole association request (ARTIM)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def tls_open_to_any_client(self) -> bool:
        return self.tls_enabled and not self.tls_ca


@dataclass(frozen=True)
class RisSettings:
    """The RIS that receives HL7 ORU results over MLLP; nothing goes to it unless ``enabled``."""

    enabled: bool = False
    host: str = ""
    port: int = 2575
    sending_application: str = "HULUWS"
    sending_facility: str = "RADIOLOGY"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"
    ack_timeout: int = 30  # seconds from connecting to a complete ACK (slow RIS: raise it)


@dataclass(frozen=True)
class ModelSettings:
    """Where the Hulu-Med weights live and how to run them."""

    folder: str = ""
    device: str = "auto"
    quantization: str = "auto"  # NF4 on a CPU is many times slower than fp32: never the default


@dataclass(frozen=True)
class GeneralSettings:
    create_demo_if_empty: bool = False  # True: generate the demo study without asking
    predraft: bool = False  # draft reports of newly received studies while the model is idle
    outbox_retention_days: int = (
        30  # delivered report payloads and chat histories (PHI) are deleted after this
    )
    lock_after_minutes: int = 15  # the workstation locks after this long without input (0: never)


@dataclass(frozen=True)
class AppSettings:
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    ris: RisSettings = field(default_factory=RisSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    general: GeneralSettings = field(default_factory=GeneralSettings)

    def to_form(self) -> dict[str, str]:
        """Every value as the text a form field shows, keyed ``section.name``."""
        form: dict[str, str] = {}
        for section, values in asdict(self).items():
            for name, value in values.items():
                if isinstance(value, (list, tuple)):
                    value = ", ".join(value)
                elif isinstance(value, bool):
                    value = "true" if value else "false"
                form[f"{section}.{name}"] = str(value)
        return form


class SettingsError(ValueError):
    """Some fields are invalid; ``errors`` maps ``section.name`` to a message for the user."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def form_keys() -> list[str]:
    """All ``section.name`` keys of the settings form, in display order."""
    keys = []
    for section in fields(AppSettings):
        for f in fields(section.default_factory()):  # type: ignore[misc]
            keys.append(f"{section.name}.{f.name}")
    return keys


def bool_keys() -> set[str]:
    """The ``section.name`` keys whose values are true/false (check boxes in the dialog)."""
    defaults = AppSettings()
    return {
        f"{section.name}.{f.name}"
        for section in fields(AppSettings)
        for f in fields(getattr(defaults, section.name))
        if isinstance(getattr(getattr(defaults, section.name), f.name), bool)
    }


def _int_range(text: str, errors: dict[str, str], key: str, low: int, high: int) -> int:
    text = text.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        errors[key] = f"a whole number from {low} to {high}"
        return low
    return int(text)


def _port(text: str, errors: dict[str, str], key: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        errors[key] = "a port number from 1 to 65535"
        return 0
    return int(text)


def _ae(text: str, errors: dict[str, str], key: str) -> str:
    text = text.strip()
    if not AE_TITLE_RE.match(text) or not text.strip():
        errors[key] = "an AE title of 1-16 printable characters, no backslash"
    return text


def _existing_file(text: str, errors: dict[str, str], key: str) -> str:
    text = text.strip()
    if text and not Path(text).is_file():
        errors[key] = f"file not found: {text}"
    return text


def _bool(text: str, errors: dict[str, str], key: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    errors[key] = "true or false"
    return False


def _hl7_name(text: str, errors: dict[str, str], key: str) -> str:
    text = text.strip()
    if not HL7_NAME_RE.match(text):
        errors[key] = "a name without HL7 delimiters (| ^ ~ \\ &)"
    return text


def parse_settings(
    form: Mapping[str, str], base: AppSettings | None = None, *, check_paths: bool = True
) -> AppSettings:
    """Validate a whole form (``section.name`` -> text) and return the settings it describes.

    Keys absent from ``form`` keep their value from ``base``. Raises :class:`SettingsError`
    listing every invalid field; nothing is partially applied. ``check_paths=False`` (loading a
    saved file) keeps TLS files and the model folder even when they are missing right now, and TLS
    without a CA even when open to any client was not chosen: the listener and the model then say
    what is wrong, instead of TLS being silently dropped.
    """
    merged = (base or AppSettings()).to_form()
    unknown = set(form) - set(merged)
    errors: dict[str, str] = {k: "unknown setting" for k in sorted(unknown)}
    apply_errors: dict[str, str] = errors if check_paths else {}  # checked only when a form is applied
    merged.update({k: v for k, v in form.items() if k in merged})
    g = merged.get

    allowed = tuple(a.strip() for a in re.split(r"[,\s]+", g("listener.allowed_aets", "")) if a.strip())
    for a in allowed:
        if not AE_TITLE_RE.match(a):
            errors["listener.allowed_aets"] = f"not a valid AE title: {a!r}"
    cert = _existing_file(g("listener.tls_cert", ""), apply_errors, "listener.tls_cert")
    key = _existing_file(g("listener.tls_key", ""), apply_errors, "listener.tls_key")
    if bool(cert) != bool(key):
        errors.setdefault(
            "listener.tls_key" if cert else "listener.tls_cert", "TLS needs both a certificate and a key"
        )
    host_text = g("listener.host", "").strip()
    try:
        ipaddress.ip_address(host_text)
    except ValueError:
        errors["listener.host"] = "an IP address to listen on (0.0.0.0: all interfaces)"
    listener = ListenerSettings(
        aet=_ae(g("listener.aet", ""), errors, "listener.aet"),
        port=_port(g("listener.port", ""), errors, "listener.port"),
        host=host_text,
        allowed_aets=allowed,
        tls_cert=cert,
        tls_key=key,
        tls_ca=_existing_file(g("listener.tls_ca", ""), apply_errors, "listener.tls_ca"),
        tls_no_client_auth=_bool(g("listener.tls_no_client_auth", ""), errors, "listener.tls_no_client_auth"),
        acse_timeout=_int_range(g("listener.acse_timeout", ""), errors, "listener.acse_timeout", 1, 600),
    )
    if listener.tls_open_to_any_client and not listener.tls_no_client_auth:
        # checked when the form is applied; a stored file keeps its values and the listener,
        # which refuses to start so, says why in the status bar
        apply_errors["listener.tls_ca"] = (
            "without a CA any client gets in: give the CA that signs your modalities' certificates, "
            "or tick 'accept TLS clients without a certificate'"
        )
    elif listener.tls_no_client_auth and listener.tls_ca:
        errors["listener.tls_no_client_auth"] = "with a CA, clients must present a certificate: untick this"

    host = g("ris.host", "").strip()
    ris_enabled = _bool(g("ris.enabled", ""), errors, "ris.enabled")
    if host and not HOST_RE.match(host):
        errors["ris.host"] = "a host name or IP address"
    elif ris_enabled and not host:
        errors["ris.host"] = "the RIS host is needed when sending to the RIS is enabled"
    ris = RisSettings(
        enabled=ris_enabled,
        host=host,
        port=_port(g("ris.port", ""), errors, "ris.port"),
        sending_application=_hl7_name(g("ris.sending_application", ""), errors, "ris.sending_application"),
        sending_facility=_hl7_name(g("ris.sending_facility", ""), errors, "ris.sending_facility"),
        receiving_application=_hl7_name(
            g("ris.receiving_application", ""), errors, "ris.receiving_application"
        ),
        receiving_facility=_hl7_name(g("ris.receiving_facility", ""), errors, "ris.receiving_facility"),
        ack_timeout=_int_range(g("ris.ack_timeout", ""), errors, "ris.ack_timeout", 1, 600),
    )

    folder = g("model.folder", "").strip()
    if folder and not Path(folder).is_dir():
        apply_errors["model.folder"] = f"folder not found: {folder}"
    device = g("model.device", "").strip().lower()
    if device not in DEVICES:
        errors["model.device"] = f"one of {', '.join(DEVICES)}"
    quant = g("model.quantization", "").strip().lower()
    if quant not in QUANTIZATIONS:
        errors["model.quantization"] = f"one of {', '.join(QUANTIZATIONS)}"
    model = ModelSettings(folder=folder, device=device, quantization=quant)

    general = GeneralSettings(
        create_demo_if_empty=_bool(
            g("general.create_demo_if_empty", ""), errors, "general.create_demo_if_empty"
        ),
        predraft=_bool(g("general.predraft", ""), errors, "general.predraft"),
        outbox_retention_days=_int_range(
            g("general.outbox_retention_days", ""), errors, "general.outbox_retention_days", 1, 3650
        ),
        lock_after_minutes=_int_range(
            g("general.lock_after_minutes", ""), errors, "general.lock_after_minutes", 0, 720
        ),
    )
    if errors:
        raise SettingsError(errors)
    return AppSettings(listener=listener, ris=ris, model=model, general=general)
