"""Viewers for the objects around the images: SR content trees, key object selections, encapsulated
PDFs, and a tag browser for any instance (nested sequences folded, private tags with their creator,
search). Values are shown to the user only; nothing of them is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom import dcmread
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.object_kinds import KIND_LABELS, object_kind
from viewer.objects.kos import read_key_selection
from viewer.objects.pdf import encapsulated_pdf, render_pages
from viewer.objects.sr import SrDocument, SrNode, read_sr
from viewer.objects.tags import TagRow, filter_rows, tag_rows

log = logging.getLogger(__name__)
SOP_INSTANCE_ROLE = Qt.ItemDataRole.UserRole + 1


class SrView(QTreeWidget):
    """The content tree: headings fold, values beside their concept, image references open."""

    image_requested = Signal(str)  # SOP Instance UID of a referenced image

    def __init__(self, document: SrDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Content", "Value"])
        self.setColumnWidth(0, 320)
        self.document = document
        self.addTopLevelItem(self._item(document.root))
        self.expandAll()
        self.itemActivated.connect(self._activated)

    def _item(self, node: SrNode) -> QTreeWidgetItem:
        concept = node.concept or f"({node.value_type.lower() or 'item'})"
        item = QTreeWidgetItem([concept, node.value])
        item.setToolTip(1, node.value)
        for ref in node.references:
            frames = f", frames {','.join(map(str, ref.frames))}" if ref.frames else ""
            child = QTreeWidgetItem(["image", f"{ref.sop_instance_uid}{frames} (open)"])
            child.setData(0, SOP_INSTANCE_ROLE, ref.sop_instance_uid)
            item.addChild(child)
        for node_child in node.children:
            item.addChild(self._item(node_child))
        return item

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        uid = item.data(0, SOP_INSTANCE_ROLE)
        if uid:
            self.image_requested.emit(str(uid))


class TagBrowser(QWidget):
    """Every element of one instance; typing filters (a match keeps its parents visible)."""

    def __init__(self, rows: list[TagRow], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows = rows
        self.search = QLineEdit(placeholderText="Search tag, name, value or private creator")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Tag", "Name", "VR", "Value", "Private creator"])
        self.tree.setColumnWidth(1, 220)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)
        self.search.textChanged.connect(self.show_matching)
        self.show_matching("")

    def show_matching(self, text: str) -> None:
        wanted = set(map(id, filter_rows(self.rows, text))) if text.strip() else None
        self.tree.clear()
        parents: list[QTreeWidgetItem] = []
        shown: list[tuple[QTreeWidgetItem, bool]] = []
        for row in self.rows:
            item = QTreeWidgetItem([row.tag, row.name, row.vr, row.value, row.private_creator])
            del parents[row.depth :]
            (parents[-1].addChild(item) if parents else self.tree.addTopLevelItem(item))
            parents.append(item)
            shown.append((item, wanted is None or id(row) in wanted))
        if wanted is not None:  # hide what does not match, unless a descendant does
            for item, matches in reversed(shown):
                visible = matches or any(not item.child(n).isHidden() for n in range(item.childCount()))
                item.setHidden(not visible)
            self.tree.expandAll()
        else:
            self.tree.expandToDepth(0)

    def visible_names(self) -> list[str]:
        names = []

        def walk(item: QTreeWidgetItem) -> None:
            if not item.isHidden():
                names.append(item.text(1))
                for n in range(item.childCount()):
                    walk(item.child(n))

        for n in range(self.tree.topLevelItemCount()):
            walk(self.tree.topLevelItem(n))
        return names


def _pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class PdfView(QScrollArea):
    """The pages of an encapsulated PDF, rendered here (no other program, no network)."""

    def __init__(self, pages: list[np.ndarray], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        body = QWidget()
        layout = QVBoxLayout(body)
        self.page_labels = []
        for page in pages:
            label = QLabel()
            label.setPixmap(_pixmap(page))
            layout.addWidget(label)
            self.page_labels.append(label)
        self.setWidget(body)
        self.setWidgetResizable(True)


class ObjectDialog(QDialog):
    """One instance: its content view (SR, KOS, PDF) when it has one, and its tags."""

    image_requested = Signal(str)

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        ds = dcmread(path)
        self.kind = object_kind(str(ds.get("SOPClassUID", "")), "PixelData" in ds)
        self.setWindowTitle(
            f"{KIND_LABELS[self.kind].capitalize()} - {ds.get('SeriesDescription', '')}".rstrip(" -")
        )
        self.tabs = QTabWidget()
        self.content: QWidget | None = None
        try:
            self.content = self._content(ds)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            message = QLabel(f"This {KIND_LABELS[self.kind]} cannot be shown: {exc}")
            message.setWordWrap(True)
            self.content = message
        if self.content is not None:
            self.tabs.addTab(self.content, "Content")
        self.tags = TagBrowser(tag_rows(ds))
        self.tabs.addTab(self.tags, "Tags")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.resize(900, 700)

    def _content(self, ds) -> QWidget | None:
        if self.kind == "sr":
            view = SrView(read_sr(ds))
            view.image_requested.connect(self.image_requested)
            return view
        if self.kind == "kos":
            selection = read_key_selection(ds)
            view = SrView(read_sr(ds))
            view.setHeaderLabels([f"{selection.title} ({len(selection.references)} images)", "Value"])
            view.image_requested.connect(self.image_requested)
            return view
        if self.kind == "pdf":
            return PdfView(render_pages(encapsulated_pdf(ds)))
        return None


class LayerPanel(QDialog):
    """The segments or structures of one overlay, each with a check box to show or hide it."""

    def __init__(
        self, title: str, items: list[tuple[int, str, tuple[int, int, int]]], layer, views, parent=None
    ):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.layer, self.views = layer, views
        self.list = QListWidget()
        for number, name, colour in items:
            entry = QListWidgetItem(name)
            entry.setData(SOP_INSTANCE_ROLE, number)
            entry.setFlags(entry.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            entry.setCheckState(Qt.CheckState.Checked)
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(*colour))
            entry.setIcon(QIcon(swatch))
            self.list.addItem(entry)
        self.list.itemChanged.connect(self._toggled)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)

    def _toggled(self, entry: QListWidgetItem) -> None:
        number = int(entry.data(SOP_INSTANCE_ROLE))
        if entry.checkState() == Qt.CheckState.Checked:
            self.layer.hidden.discard(number)
        else:
            self.layer.hidden.add(number)
        for view in self.views:
            view.request_render()
