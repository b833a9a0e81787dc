"""The study browser widget: filter bar, sortable study table, series thumbnails (a thin Qt shell).

All decisions live in :class:`app.reading.study_list.StudyBrowserLogic`; this widget shows its
rows, forwards the filter, polls for live changes with a QTimer and emits ``open_requested``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QCoreApplication,
    QModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.reading.study_list import COLUMNS, StudyBrowserLogic, StudyFilter
from app.reading.thumbnails import ThumbnailCache

SERIES_MIME = "application/x-hulu-series-uid"
STUDY_UID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
_ROOT = QModelIndex()


def array_to_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of a uint8 grey (H, W) or RGB (H, W, 3) array (copied)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    if image.ndim == 2:
        qimage = QImage(image.data, w, h, image.strides[0], QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(image.data, w, h, image.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


class StudyTableModel(QAbstractTableModel):
    def __init__(self, logic: StudyBrowserLogic, parent: QWidget | None = None):
        super().__init__(parent)
        self.logic = logic

    def rowCount(self, parent: QModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.logic.rows)

    def columnCount(self, parent: QModelIndex = _ROOT) -> int:
        return len(COLUMNS) + 1

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title if section < len(COLUMNS) else "Status"
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record = self.logic.rows[index.row()]
        col = index.column()
        if role == STUDY_UID_ROLE:
            return record.study_uid
        if col == len(COLUMNS):
            if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
                return self.logic.status_text(record)
            if role == Qt.ItemDataRole.ForegroundRole and self.logic.receiving(record.study_uid):
                return QColor("#f0b400")
            return None
        value = COLUMNS[col].value(record)
        if role == SORT_ROLE:
            return value
        if role == Qt.ItemDataRole.DisplayRole:
            return str(value)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        """A study a task is changing (being deleted) is shown greyed and cannot be selected."""
        flags = super().flags(index)
        if index.isValid() and self.logic.rows[index.row()].study_uid in self.logic.busy:
            flags &= ~(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        return flags

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()


class SeriesStrip(QListWidget):
    """Series thumbnails of one study; items can be dragged into a viewport."""

    thumbnail_ready = Signal(str, int, object)  # series UID, generation, uint8 image (worker thread)

    def __init__(self, parent: QWidget | None = None, *, vertical: bool = False):
        super().__init__(parent)
        self._generation = 0
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnails")
        self.thumbnail_ready.connect(self._set_thumbnail)
        self.destroyed.connect(lambda *_: self._workers.shutdown(wait=False, cancel_futures=True))
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.TopToBottom if vertical else QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setIconSize(QSize(96, 96))
        self.setMovement(QListWidget.Movement.Static)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSpacing(4)
        self.setWordWrap(True)
        self.setGridSize(QSize(118, 140))
        if vertical:
            self.setFixedWidth(140)
        else:
            self.setFixedHeight(160)

    def mimeData(self, items):
        mime = super().mimeData(items)
        if items:
            mime.setData(SERIES_MIME, items[0].data(STUDY_UID_ROLE).encode())
            mime.setText(items[0].data(STUDY_UID_ROLE))
        return mime

    def show_series(self, archive, study_uid: str, cache: ThumbnailCache) -> None:
        """List the study's series at once; thumbnails not yet cached are decoded on a worker
        thread (a big multi-frame file must not freeze the GUI) and appear when ready."""
        self.clear()
        self._generation += 1
        missing = []
        for s in sorted(archive.series(study_uid), key=lambda r: (r.series_number or 0, r.series_uid)):
            instances = archive.instances(s.series_uid)
            paths = [i.path for i in instances]
            thumb = cache.cached(s.series_uid, len(paths))
            frames = instances[0].frames if instances else 1
            count = f"{frames} fr" if frames > 1 else f"{s.instance_count} im"
            item = QListWidgetItem(f"{s.modality} {s.series_number or ''}\n{s.description[:22]}\n{count}")
            if thumb is not None:
                item.setIcon(QIcon(array_to_pixmap(thumb)))
            elif paths:
                missing.append((s.series_uid, paths))
            item.setData(STUDY_UID_ROLE, s.series_uid)
            item.setToolTip(s.description)
            self.addItem(item)
        if missing:
            generation = self._generation
            self._workers.submit(self._render_missing, cache, missing, generation)

    def _render_missing(self, cache: ThumbnailCache, missing: list, generation: int) -> None:
        for series_uid, paths in missing:
            if generation != self._generation:
                return  # another study is shown now
            thumb = cache.get(series_uid, paths)
            if thumb is not None:
                self.thumbnail_ready.emit(series_uid, generation, thumb)

    def _set_thumbnail(self, series_uid: str, generation: int, thumb: np.ndarray) -> None:
        if generation != self._generation:
            return
        for row in range(self.count()):
            item = self.item(row)
            if item.data(STUDY_UID_ROLE) == series_uid:
                item.setIcon(QIcon(array_to_pixmap(thumb)))

    def wait_thumbnails(self, timeout: float = 30.0) -> None:
        """Block until the thumbnails requested so far are rendered (tests, shutdown)."""
        self._workers.submit(lambda: None).result(timeout)
        QCoreApplication.processEvents()


class StudyBrowser(QWidget):
    """Filter bar + study table + series thumbnails of the selected study."""

    open_requested = Signal(str)  # study UID
    delete_requested = Signal(str)
    export_requested = Signal(str, bool)  # study UID, as zip
    import_requested = Signal()
    query_pacs_requested = Signal()
    studies_changed = Signal(list)  # study UIDs stored or deleted since the last poll

    def __init__(
        self,
        logic: StudyBrowserLogic,
        thumbnails: ThumbnailCache,
        parent: QWidget | None = None,
        poll_ms: int = 1000,
    ):
        super().__init__(parent)
        self.logic = logic
        self.thumbnails = thumbnails
        self.model = StudyTableModel(logic, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)

        self.fields: dict[str, QLineEdit] = {}
        bar = QHBoxLayout()
        for key, hint, width in (
            ("patient_name", "Patient name", 150),
            ("patient_id", "Patient ID", 100),
            ("accession", "Accession", 100),
            ("description", "Description", 150),
            ("date_from", "From YYYY-MM-DD", 115),
            ("date_to", "To YYYY-MM-DD", 115),
        ):
            edit = QLineEdit(self)
            edit.setPlaceholderText(hint)
            edit.setMaximumWidth(width + 60)
            edit.setMinimumWidth(40)
            edit.setObjectName(f"filter_{key}")
            edit.returnPressed.connect(self.apply_filter)
            self.fields[key] = edit
            bar.addWidget(edit)
        self.modality = QComboBox(self)
        self.modality.addItems(["Any modality", "CT", "MR", "CR", "DX", "US", "XA", "MG", "PT", "NM", "SR"])
        self.modality.setToolTip("Modality")
        self.modality.currentIndexChanged.connect(self.apply_filter)
        bar.addWidget(self.modality)
        search = QPushButton("Search", self)
        search.clicked.connect(self.apply_filter)
        bar.addWidget(search)
        clear = QPushButton("Clear", self)
        clear.clicked.connect(self.clear_filter)
        bar.addWidget(clear)
        bar.addStretch(1)
        for text, signal in (
            ("Import...", self.import_requested),
            ("Query PACS...", self.query_pacs_requested),
        ):
            b = QPushButton(text, self)
            b.clicked.connect(signal.emit)
            bar.addWidget(b)
        self.message = QLabel("", self)
        self.message.setObjectName("browserMessage")

        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _: self._emit_selected(self.open_requested))
        self.table.selectionModel().selectionChanged.connect(self._show_selected_series)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        for text, slot in (
            ("Open", lambda: self._emit_selected(self.open_requested)),
            ("Export anonymised to folder...", lambda: self._export(False)),
            ("Export anonymised to zip...", lambda: self._export(True)),
            ("Delete study...", lambda: self._emit_selected(self.delete_requested)),
        ):
            action = QAction(text, self.table)
            action.triggered.connect(slot)
            self.table.addAction(action)

        self.series = SeriesStrip(self)
        self.series.itemDoubleClicked.connect(lambda _: self._emit_selected(self.open_requested))
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(self.series)
        split.setStretchFactor(0, 1)
        self.splitter = split

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.message)
        layout.addWidget(split, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self._refresh_view()

    # -- actions --------------------------------------------------------------------------------
    def current_filter(self) -> StudyFilter:
        values = {k: e.text() for k, e in self.fields.items()}
        modality = self.modality.currentText() if self.modality.currentIndex() > 0 else ""
        return StudyFilter(modality=modality, **values)

    def apply_filter(self) -> None:
        try:
            self.logic.set_filter(self.current_filter())
        except ValueError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText("")
        self._refresh_view()

    def clear_filter(self) -> None:
        for edit in self.fields.values():
            edit.clear()
        self.modality.setCurrentIndex(0)
        self.apply_filter()

    def poll(self) -> None:
        """Timer tick: pick up studies the listener (another process) stored; refresh counts."""
        changed = self.logic.poll()
        if changed or any(self.logic.receiving(r.study_uid) for r in self.logic.rows):
            self._refresh_view()
        if changed:
            self.studies_changed.emit(changed)

    def refresh(self) -> None:
        self.logic.refresh()
        self._refresh_view()

    def selected_study_uid(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.proxy.data(rows[0], STUDY_UID_ROLE) if rows else None

    def select_study(self, study_uid: str) -> bool:
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if self.proxy.data(index, STUDY_UID_ROLE) == study_uid:
                self.table.selectRow(row)
                return True
        return False

    def _refresh_view(self) -> None:
        selected = self.selected_study_uid()
        self.model.reset()
        self.table.resizeColumnsToContents()
        if selected:
            self.select_study(selected)

    def _emit_selected(self, signal) -> None:
        uid = self.selected_study_uid()
        if uid:
            signal.emit(uid)

    def _export(self, as_zip: bool) -> None:
        uid = self.selected_study_uid()
        if uid:
            self.export_requested.emit(uid, as_zip)

    def _show_selected_series(self) -> None:
        uid = self.selected_study_uid()
        if uid:
            self.series.show_series(self.logic.archive, uid, self.thumbnails)
        else:
            self.series.clear()
