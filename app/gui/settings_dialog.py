"""Settings dialog: a thin form over :func:`app.services.settings_model.parse_settings`.

OK validates the whole form first; if any field is invalid a message lists every problem and
nothing is saved. PACS nodes are edited in the same dialog but kept in ``dicom_net.pacs_nodes``'s
file (shared with the `hulu-workstation pacs` command line); each node is validated on its own.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.services.settings_model import DEVICES, QUANTIZATIONS, AppSettings, SettingsError, bool_keys
from app.services.settings_store import SettingsStore
from dicom_net.pacs_nodes import DEFAULT_CALLING_AET, DicomWebNode, PacsNode, PacsNodeError, PacsNodes

LABELS = {
    "listener.aet": "AE title",
    "listener.port": "Port",
    "listener.host": "Listen on (IP address)",
    "listener.allowed_aets": "Allowed calling AEs",
    "listener.tls_cert": "TLS certificate",
    "listener.tls_key": "TLS private key",
    "listener.tls_ca": "TLS CA (client certificates)",
    "listener.tls_no_client_auth": "Accept TLS clients without a certificate (no client authentication)",
    "listener.acse_timeout": "Association request timeout (seconds)",
    "ris.host": "Host",
    "ris.port": "Port",
    "ris.sending_application": "Sending application",
    "ris.sending_facility": "Sending facility",
    "ris.receiving_application": "Receiving application",
    "ris.receiving_facility": "Receiving facility",
    "ris.ack_timeout": "ACK timeout (seconds)",
    "model.folder": "Model folder",
    "model.device": "Device",
    "model.quantization": "Quantization",
    "general.create_demo_if_empty": "Create demo study when archive is empty",
    "ris.enabled": "Send each report to the RIS when it is signed",
    "general.predraft": "Pre-draft reports of new studies while the AI is idle (drafts only, never sent)",
    "general.outbox_retention_days": "Keep delivered report messages and chat histories (days)",
    "general.lock_after_minutes": "Lock the workstation after this many idle minutes (0: never)",
}
OPEN_TLS_TEXT = (
    "TLS without a CA: traffic is encrypted, but ANY computer that can reach this port may send "
    "studies (no client certificate is checked; only the allowed calling AEs restrict senders). "
    "Give the CA that signs your modalities' certificates to authenticate them."
)
ECHO_TIMEOUT_S = 5.0
PAGES = (("listener", "Listener"), ("ris", "RIS"), ("model", "Model"), ("general", "General"))


def node_from_fields(values: dict[str, str]) -> PacsNode:
    """A validated PACS node from the node form's text fields (PacsNodeError names the problem)."""
    port = values.get("port", "").strip()
    if not port.isdigit():
        raise PacsNodeError(f"port {port!r} must be a whole number from 1 to 65535")
    return PacsNode(
        name=values.get("name", "").strip(),
        aet=values.get("aet", ""),
        host=values.get("host", ""),
        port=int(port),
        calling_aet=values.get("calling_aet", "") or DEFAULT_CALLING_AET,
        retrieve_method=values.get("retrieve_method", "move"),
    )


class PacsNodesPage(QWidget):
    """List, add/replace, remove and C-ECHO the configured PACS nodes."""

    echo_result = Signal(str)
    changed = Signal()  # a node was saved or removed

    def __init__(self, nodes: PacsNodes, parent: QWidget | None = None):
        super().__init__(parent)
        self.nodes = nodes
        self.list = QListWidget(self)
        self.list.currentTextChanged.connect(self._show)
        self.fields = {k: QLineEdit(self) for k in ("name", "aet", "host", "port", "calling_aet")}
        self.method = QComboBox(self)
        self.method.addItems(["move", "get"])
        form = QFormLayout()
        for key, label in (
            ("name", "Name"),
            ("aet", "PACS AE title"),
            ("host", "Host"),
            ("port", "Port"),
            ("calling_aet", "Our AE title"),
        ):
            self.fields[key].setObjectName(f"node_{key}")
            form.addRow(label, self.fields[key])
        form.addRow("Retrieve with", self.method)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.echo_result.connect(self.status.setText)
        buttons = QHBoxLayout()
        for text, slot in (
            ("Save node", self.save_node),
            ("Remove", self.remove_node),
            ("Test (C-ECHO)", self.echo),
        ):
            b = QPushButton(text, self)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.reload()

    def reload(self) -> None:
        self.list.clear()
        try:
            self.list.addItems(sorted(self.nodes.load()))
        except PacsNodeError as exc:
            self.status.setText(str(exc))

    def _show(self, name: str) -> None:
        try:
            node = self.nodes.load().get(name)
        except PacsNodeError:
            return
        if isinstance(node, DicomWebNode):  # edited on the command line: pacs nodes add --dicomweb
            for field in self.fields.values():
                field.clear()
            self.status.setText(
                f"{name}: {node.describe()} (change it with: hulu-workstation pacs nodes add)"
            )
        elif node:
            for key in self.fields:
                self.fields[key].setText(str(getattr(node, key)))
            self.method.setCurrentText(node.retrieve_method)

    def field_values(self) -> dict[str, str]:
        return {**{k: e.text() for k, e in self.fields.items()}, "retrieve_method": self.method.currentText()}

    def save_node(self) -> bool:
        try:
            node = node_from_fields(self.field_values())
            self.nodes.add(node, replace=True)
        except PacsNodeError as exc:
            self.status.setText(f"Not saved: {exc}")
            return False
        self.status.setText(f"Saved node {node.name}")
        self.reload()
        self.changed.emit()
        return True

    def remove_node(self) -> None:
        name = self.fields["name"].text().strip()
        try:
            self.nodes.remove(name)
        except (KeyError, PacsNodeError) as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"Removed node {name}")
        self.reload()
        self.changed.emit()

    def echo(self) -> None:
        """C-ECHO the node in the form on a worker thread; the answer arrives as ``echo_result``."""
        try:
            node = replace(node_from_fields(self.field_values()), timeout_s=ECHO_TIMEOUT_S)
        except PacsNodeError as exc:
            self.echo_result.emit(f"C-ECHO not sent: {exc}")
            return
        self.status.setText(f"C-ECHO {node.name}...")

        def run() -> None:
            from dicom_net.scu import echo

            try:
                result = echo(node)
                text = f"C-ECHO {node.name}: OK in {result.seconds * 1000:.0f} ms"
            except Exception as exc:  # noqa: BLE001 - every failure is shown, with its reason
                text = f"C-ECHO {node.name} failed: {exc}"
            self.echo_result.emit(text)  # queued to the GUI thread

        threading.Thread(target=run, name="c-echo", daemon=True).start()


class SettingsDialog(QDialog):
    """Listener, PACS nodes, RIS, model and general settings."""

    applied = Signal(object)  # the new AppSettings
    pacs_nodes_changed = Signal()  # saved at once by the PACS nodes page, not by OK

    def __init__(self, store: SettingsStore, nodes: PacsNodes | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.store = store
        current = store.load().to_form()
        self.inputs: dict[str, QLineEdit | QComboBox | QCheckBox] = {}
        tabs = QTabWidget(self)
        checkboxes = bool_keys()
        for section, title in PAGES:
            page = QWidget(tabs)
            form = QFormLayout(page)
            for key, value in current.items():
                if not key.startswith(section + "."):
                    continue
                widget: QLineEdit | QComboBox | QCheckBox
                if key == "model.device":
                    widget = QComboBox(page)
                    widget.addItems(DEVICES)
                    widget.setCurrentText(value)
                elif key == "model.quantization":
                    widget = QComboBox(page)
                    widget.addItems(QUANTIZATIONS)
                    widget.setCurrentText(value)
                elif key in checkboxes:
                    widget = QCheckBox(page)
                    widget.setChecked(value == "true")
                else:
                    widget = QLineEdit(value, page)
                widget.setObjectName(key)
                self.inputs[key] = widget
                form.addRow(LABELS.get(key, key), widget)
            tabs.addTab(page, title)
            if section == "listener":
                self._add_listener_notes(form, page)
                self.pacs_page = PacsNodesPage(nodes or PacsNodes(), tabs)
                self.pacs_page.changed.connect(self.pacs_nodes_changed)
                tabs.addTab(self.pacs_page, "PACS nodes")
        self.tabs = tabs
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.error_label = QLabel("", self)
        self.error_label.setObjectName("browserMessage")
        self.error_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self.last_errors: dict[str, str] = {}

    def _add_listener_notes(self, form: QFormLayout, page: QWidget) -> None:
        """The running listener's state (why it failed, if it did), and a warning while TLS
        would let any client in."""
        self.listener_status_label = QLabel("Listener: -", page)
        self.listener_status_label.setObjectName("listenerStatusDetail")
        self.listener_status_label.setWordWrap(True)
        form.insertRow(0, "Status", self.listener_status_label)
        self.tls_warning = QLabel(OPEN_TLS_TEXT, page)
        self.tls_warning.setObjectName("tlsWarning")
        self.tls_warning.setWordWrap(True)
        self.tls_warning.setStyleSheet("color: #e06060")
        form.addRow(self.tls_warning)
        for key in ("listener.tls_cert", "listener.tls_key", "listener.tls_ca"):
            self.inputs[key].textChanged.connect(self._update_tls_warning)
        self.inputs["listener.tls_no_client_auth"].toggled.connect(self._update_tls_warning)
        self._update_tls_warning()

    def _update_tls_warning(self) -> None:
        values = self.form()
        open_tls = bool(values["listener.tls_cert"].strip() and not values["listener.tls_ca"].strip())
        self.tls_warning.setVisible(open_tls)

    def show_listener_status(self, text: str, failed: bool) -> None:
        self.listener_status_label.setText(text)
        self.listener_status_label.setStyleSheet("color: #e06060" if failed else "")

    def form(self) -> dict[str, str]:
        out = {}
        for key, w in self.inputs.items():
            if isinstance(w, QComboBox):
                out[key] = w.currentText()
            elif isinstance(w, QCheckBox):
                out[key] = "true" if w.isChecked() else "false"
            else:
                out[key] = w.text()
        return out

    def try_apply(self) -> AppSettings | None:
        """Validate and save the whole form; on any error show all messages and save nothing."""
        try:
            settings = self.store.apply_form(self.form())
        except SettingsError as exc:
            self.last_errors = exc.errors
            self.error_label.setText(
                "Not saved. Please correct:\n"
                + "\n".join(f"- {LABELS.get(k, k)}: {m}" for k, m in exc.errors.items())
            )
            return None
        self.last_errors = {}
        self.applied.emit(settings)
        return settings

    def accept(self) -> None:
        if self.try_apply() is not None:
            super().accept()
        else:
            QMessageBox.warning(self, "Settings not saved", self.error_label.text())
