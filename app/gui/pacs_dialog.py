"""Query a configured PACS node and retrieve studies, in background tasks with progress and cancel.

C-MOVE asks the PACS to send to our listener's AE title (the listener process stores the files);
C-GET receives on the query association and stores straight into the archive, as WADO-RS does
from a DICOMweb node (the node list says which kind each node is). Either way the
study then appears in the browser and opens like a local one.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.tasks import TaskManager
from app.reading.study_list import StudyFilter, format_date
from dicom_net.archive import Archive
from dicom_net.pacs_nodes import AnyNode, DicomWebNode, PacsNodeError, PacsNodes

RESULT_COLUMNS = (
    ("PatientName", "Patient"),
    ("PatientID", "ID"),
    ("StudyDate", "Date"),
    ("ModalitiesInStudy", "Modality"),
    ("StudyDescription", "Description"),
    ("AccessionNumber", "Accession"),
    ("NumberOfStudyRelatedInstances", "Images"),
)


def query_keys(study_filter: StudyFilter) -> dict[str, str]:
    """C-FIND keys for ``dicom_net.scu.find`` from the browser's filter fields (description is
    matched locally: not every PACS supports matching on it)."""
    keys = study_filter.archive_filters()
    keys.pop("description", None)
    if "patient_name" in keys and "*" not in keys["patient_name"]:
        keys["patient_name"] = f"*{keys['patient_name']}*"
    return keys


def matches_description(answer: dict, study_filter: StudyFilter) -> bool:
    wanted = study_filter.description.strip().casefold()
    return not wanted or wanted in str(answer.get("StudyDescription", "")).casefold()


def node_kind_text(node: AnyNode) -> str:
    """One line saying which kind of node this is, where it is and how it retrieves."""
    if isinstance(node, DicomWebNode):
        return f"{node.describe()}, retrieve by WADO-RS"
    return f"DICOM {node.aet}@{node.host}:{node.port}, retrieve by C-{node.retrieve_method.upper()}"


class PacsDialog(QDialog):
    retrieved = Signal(str)  # study UID

    def __init__(
        self,
        tasks: TaskManager,
        archive: Archive,
        listener_aet: str,
        parent: QWidget | None = None,
        nodes: PacsNodes | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Query / retrieve")
        self.tasks, self.archive, self.listener_aet = tasks, archive, listener_aet
        self.nodes = nodes or PacsNodes()
        self.node_box = QComboBox(self)
        self.node_kind = QLabel("", self)  # which kind the chosen node is, and where
        self.node_box.currentIndexChanged.connect(self._show_node_kind)
        self.fields = {
            k: QLineEdit(self)
            for k in (
                "patient_name",
                "patient_id",
                "accession",
                "description",
                "modality",
                "date_from",
                "date_to",
            )
        }
        form = QFormLayout()
        form.addRow("PACS node", self.node_box)
        form.addRow("", self.node_kind)
        for key, label in (
            ("patient_name", "Patient name"),
            ("patient_id", "Patient ID"),
            ("accession", "Accession"),
            ("description", "Description"),
            ("modality", "Modality"),
            ("date_from", "Date from"),
            ("date_to", "Date to"),
        ):
            form.addRow(label, self.fields[key])
        self.results = QTableWidget(0, len(RESULT_COLUMNS), self)
        self.results.setHorizontalHeaderLabels([t for _, t in RESULT_COLUMNS])
        self.results.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.setSortingEnabled(True)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        self.query_button = QPushButton("Query", self)
        self.query_button.clicked.connect(self.query)
        self.retrieve_button = QPushButton("Retrieve", self)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.query_button, self.retrieve_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.status)
        self.resize(820, 560)
        self.handle = None
        self.answers: list[dict] = []
        self._load_nodes()

    def _load_nodes(self) -> None:
        try:
            nodes = self.nodes.load()
        except PacsNodeError as exc:
            nodes = {}
            self.status.setText(str(exc))
        names = sorted(nodes)
        self.node_box.clear()
        for name in names:
            self.node_box.addItem(name, node_kind_text(nodes[name]))
            self.node_box.setItemData(
                self.node_box.count() - 1, node_kind_text(nodes[name]), Qt.ItemDataRole.ToolTipRole
            )
        self._show_node_kind()
        if not names:
            self.status.setText("No PACS node configured: add one in Settings > PACS nodes.")

    def _show_node_kind(self) -> None:
        self.node_kind.setText(self.node_box.currentData() or "")

    def current_filter(self) -> StudyFilter:
        return StudyFilter(**{k: e.text() for k, e in self.fields.items()})

    def query(self) -> None:
        from dicom_net.scu import find

        try:
            node = self.nodes.get(self.node_box.currentText())
            study_filter = self.current_filter()
            keys = query_keys(study_filter)
        except (KeyError, ValueError, PacsNodeError) as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"Querying {node.name}...")

        def run(progress, cancel):
            answers = find(node, "study", cancel=cancel, **keys)
            return [a for a in answers if matches_description(a, study_filter)]

        self.handle = self.tasks.submit(
            f"Query {node.name}",
            run,
            on_done=self._show_answers,
            on_error=lambda m: self.status.setText(f"Query failed: {m}"),
        )

    def _show_answers(self, answers: list[dict]) -> None:
        self.answers = answers
        self.results.setSortingEnabled(False)
        self.results.setRowCount(len(answers))
        for row, answer in enumerate(answers):
            for col, (key, _) in enumerate(RESULT_COLUMNS):
                value = answer.get(key, "")
                if isinstance(value, list):
                    value = "/".join(str(v) for v in value)
                if key == "StudyDate":
                    value = format_date(str(value))
                if key == "PatientName":
                    value = str(value).replace("^", " ")
                item = QTableWidgetItem("" if value is None else str(value))
                item.setData(Qt.ItemDataRole.UserRole, answer.get("StudyInstanceUID"))
                self.results.setItem(row, col, item)
        self.results.setSortingEnabled(True)
        self.status.setText(f"{len(answers)} studies found")

    def retrieve_selected(self) -> None:
        rows = self.results.selectionModel().selectedRows()
        if not rows:
            self.status.setText("Select a study to retrieve")
            return
        study_uid = self.results.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
        self.retrieve(study_uid)

    def retrieve(self, study_uid: str) -> None:
        from dicom_net.scu import retrieve

        node = self.nodes.get(self.node_box.currentText())

        def run(progress, cancel):
            return retrieve(
                node,
                study_uid,
                archive=self.archive,
                move_destination=self.listener_aet,
                progress=lambda done, total: progress(done, total, f"{done}/{total} images"),
                cancel=cancel,
            )

        self.status.setText(f"Retrieving from {node.name}...")
        self.handle = self.tasks.submit(
            f"Retrieve from {node.name}",
            run,
            on_done=lambda result: self._retrieved(study_uid, result),
            on_error=lambda m: self.status.setText(f"Retrieve failed: {m}"),
        )

    def _retrieved(self, study_uid: str, result) -> None:
        text = f"Retrieved: {result.completed} images, {result.failed} failed"
        if result.cancelled:
            text += " (cancelled)"
        self.status.setText(text)
        self.retrieved.emit(study_uid)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
