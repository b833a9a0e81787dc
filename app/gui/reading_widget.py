"""The reading workspace: series strip, viewer toolbar and the viewport grid of one open study.

State lives in the reading model (:class:`app.reading.session.ReadingSession` and its
:class:`app.reading.viewports.ViewportModel` per viewport); this widget observes it and sends it
intents: key/toolbar actions go to the active viewport's view state. Volumes load in background
tasks with progress and cancel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSizePolicy,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.object_views import LayerPanel, ObjectDialog
from app.gui.study_browser import OBJECT_KIND_ROLE, OBJECT_PATH_ROLE, STUDY_UID_ROLE, SeriesStrip
from app.gui.tasks import TaskHandle, TaskManager
from app.gui.viewport import Viewport
from app.reading.layouts import Layout, ViewKind
from app.reading.session import ReadingSession
from app.reading.study_list import format_date, patient_banner
from app.reading.thumbnails import ThumbnailCache
from viewer.loader import describe_skipped
from viewer.object_kinds import object_kind
from viewer.objects.gsps import apply_to_view, read_presentation_state
from viewer.objects.kos import read_key_selection
from viewer.objects.overlays import (
    KeyImageLayer,
    PresentationLayer,
    SegLayer,
    StructureLayer,
    file_geometry,
    key_plane_indices,
)
from viewer.objects.references import referenced_series_uids
from viewer.objects.rtstruct import read_structures
from viewer.objects.seg import seg_overlay
from viewer.sources import source_at_lps

log = logging.getLogger(__name__)

SLABS = {
    "Thin": (0.0, "mip"),
    "MIP 5 mm": (5.0, "mip"),
    "MIP 10 mm": (10.0, "mip"),
    "MIP 20 mm": (20.0, "mip"),
    "MinIP 10 mm": (10.0, "minip"),
    "Average 10 mm": (10.0, "mean"),
}
TOOL_LABELS = {
    "window": "W/L",
    "pan": "Pan",
    "zoom": "Zoom",
    "crosshair": "Cross",
    "length": "Length",
    "angle": "Angle",
    "cobb": "Cobb",
    "rectangle": "ROI",
    "ellipse": "Ellipse ROI",
    "arrow": "Arrow",
    "text": "Text",
}
MEASUREMENT_ROLE = Qt.ItemDataRole.UserRole + 1


class ReadingWidget(QWidget):
    """Series thumbnails on the left, tools on top, the viewport grid in the middle."""

    loaded = Signal(int)  # viewport index whose volume is now shown
    status_message = Signal(str)

    def __init__(self, tasks: TaskManager, thumbnails: ThumbnailCache, parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.thumbnails = thumbnails
        self.session: ReadingSession | None = None
        self.viewports: list[Viewport] = []
        self.tool = "window"  # the mouse tool of every view
        self._observed: list[tuple[object, Callable[[str], None]]] = []  # states the list follows
        self._loads: list[TaskHandle] = []  # series loads started for the open study

        self.strip = SeriesStrip(self, vertical=True)
        self.strip.itemDoubleClicked.connect(self._series_activated)
        self.object_dialogs: list[ObjectDialog] = []
        self.toolbar = QToolBar("Viewer tools", self)
        self.layout_actions: dict[Layout, QAction] = {}
        group = QActionGroup(self)
        for layout in Layout:
            action = QAction(layout.value, self)
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, lay=layout: self.set_layout(lay))
            group.addAction(action)
            self.toolbar.addAction(action)
            self.layout_actions[layout] = action
        self.toolbar.addSeparator()
        self.tool_actions: dict[str, QAction] = {}
        tools = QActionGroup(self)
        from viewer.qt.slice_view import TOOLS

        for tool in TOOLS:
            action = QAction(TOOL_LABELS.get(tool, tool.title()), self)
            action.setCheckable(True)
            action.setChecked(tool == "window")
            action.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            tools.addAction(action)
            self.toolbar.addAction(action)
            self.tool_actions[tool] = action
        self.image_toolbar = QToolBar("Image", self)  # second row: window, slab, orientation, cine
        self.preset_menu = QMenu("W/L presets", self)
        self.preset_menu.aboutToShow.connect(self._fill_preset_menu)
        preset_button = QToolButton(self)
        preset_button.setText("Presets")
        preset_button.setMenu(self.preset_menu)
        preset_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.image_toolbar.addWidget(preset_button)
        self.slab_box = QComboBox(self)
        self.slab_box.setToolTip("MPR slab thickness and projection")
        for text, (mm, mode) in SLABS.items():
            self.slab_box.addItem(text, (mm, mode))
        self.slab_box.currentIndexChanged.connect(lambda _i: self.set_slab(*self.slab_box.currentData()))
        self.image_toolbar.addWidget(self.slab_box)
        for text, slot in (
            ("Invert", lambda: self.apply("invert")),
            ("Flip H", lambda: self.apply("flip_h")),
            ("Flip V", lambda: self.apply("flip_v")),
            ("Rotate", lambda: self.apply("rotate")),
            ("Reset", self.reset_view),
            ("Clear measurements", self.clear_measurements),
            ("Play", self.toggle_cine),
            ("Tags", self.show_image_tags),
        ):
            self.image_toolbar.addAction(text, slot)

        self.patient_bar = QLabel("", self)  # whose images these are, always in view while reading
        self.patient_bar.setObjectName("patientBar")
        self.patient_bar.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long name must not widen the reading area (and squeeze the report dock): clip instead
        self.patient_bar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.grid_host = QWidget(self)
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.patient_bar)
        right.addWidget(self.toolbar)
        right.addWidget(self.image_toolbar)
        right.addWidget(self.grid_host, 1)
        self.priors_label = QLabel("Priors", self)  # the patient's other studies in the archive
        self.prior_box = QComboBox(self)
        self.prior_box.setFixedWidth(140)
        self.prior_box.currentIndexChanged.connect(self._show_prior_series)
        self.prior_strip = SeriesStrip(self, vertical=True)  # drag a prior's series into a viewport
        self.measurements_label = QLabel("Measurements", self)
        self.measurement_list = QListWidget(self)  # the active viewport's, with values; click: go there
        self.measurement_list.setFixedWidth(140)
        self.measurement_list.itemClicked.connect(self._measurement_clicked)
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.strip, 2)
        left.addWidget(self.priors_label)
        left.addWidget(self.prior_box)
        left.addWidget(self.prior_strip, 1)
        left.addWidget(self.measurements_label)
        left.addWidget(self.measurement_list, 1)
        self._show_priors([])
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(left)
        outer.addLayout(right, 1)

    # -- study ---------------------------------------------------------------------------------
    def open_session(self, session: ReadingSession) -> None:
        self.session = session
        self.patient_bar.setText(patient_banner(session.study))
        self.patient_bar.setToolTip(self.patient_bar.text())
        session.listeners.append(self._session_changed)
        self.strip.show_series(session.archive, session.study_uid, self.thumbnails)
        self._show_priors(session.priors)
        self._rebuild()

    def _session_changed(self, what: str) -> None:
        if what == "active":
            self._show_active()
            return
        if what == "maximised":
            self._show_maximised()
            return
        if what == "priors" and self.session is not None:
            self._show_priors(self.session.priors)
        self._rebuild()

    def _show_priors(self, priors: list) -> None:
        """List the patient's other studies (newest first); the first one's series are shown."""
        self.prior_box.blockSignals(True)
        self.prior_box.clear()
        for prior in priors:
            text = f"{format_date(prior.study_date)} {'/'.join(prior.modalities)} {prior.description}".strip()
            self.prior_box.addItem(text, prior.study_uid)
            self.prior_box.setItemData(self.prior_box.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.prior_box.blockSignals(False)
        self.priors_label.setText(f"Priors ({len(priors)})" if priors else "No priors")
        for w in (self.prior_box, self.prior_strip):
            w.setVisible(bool(priors))
        self._show_prior_series()

    def _show_prior_series(self, _index: int = 0) -> None:
        study_uid = self.prior_box.currentData()
        if self.session is not None and study_uid:
            self.prior_strip.show_series(self.session.archive, study_uid, self.thumbnails)
        else:
            self.prior_strip.clear()

    def close_session(self) -> None:
        """Show no study (its study was deleted): viewports, series strip and patient bar cleared."""
        self.session = None
        for handle in self._loads:
            handle.cancel()
        self._loads = []
        self._observe([])
        self._remove_viewports()
        self.measurement_list.clear()
        self.strip.clear()
        self._show_priors([])
        self.patient_bar.setText("")
        self.patient_bar.setToolTip("")

    def _remove_viewports(self) -> None:
        for vp in self.viewports:
            vp.release()
            self.grid.removeWidget(vp)
            vp.hide()
            vp.deleteLater()
        self.viewports = []

    def set_layout(self, layout: Layout) -> None:
        if self.session:
            self.session.set_layout(layout)

    def _series_activated(self, item) -> None:
        """An image series goes into the active viewport; a segmentation or structure set is drawn
        over the series it belongs to, a presentation state applied to it; a report, PDF, key object
        selection ... opens in its own viewer."""
        kind, path = item.data(OBJECT_KIND_ROLE), Path(item.data(OBJECT_PATH_ROLE) or ".")
        try:
            if kind in ("seg", "rtstruct"):
                self.show_object_layer(path)
            elif kind == "pr":
                self.apply_presentation_state(path)
            elif kind == "kos":
                self.show_key_images(path)
            elif kind and kind != "image":
                self.open_object(path)
            else:
                self.assign(self.active, item.data(STUDY_UID_ROLE))
        except (ValueError, OSError, KeyError, AttributeError) as exc:
            self.status_message.emit(f"Cannot show this {kind} object: {exc}")

    def _slice_views(self, vp: Viewport) -> list:
        views = getattr(vp.view, "views", None)
        return (
            list(views.values())
            if isinstance(views, dict)
            else [vp.view]
            if hasattr(vp.view, "object_layers")
            else []
        )

    def _viewport_showing(
        self, series_uids: set[str] = frozenset(), sop_uids: set[str] = frozenset()
    ) -> Viewport:
        """The viewport showing one of these series (or one of these images). Never another one: an
        overlay drawn on images it does not belong to would show findings on the wrong anatomy."""
        assert self.session is not None
        for vp in self.viewports:
            volume = self.session.volumes.get(vp.series_uid or "")
            if volume is None or vp.view is None:
                continue
            shown = set(map(str, volume.metadata.get("sop_instance_uids", []) or []))
            if vp.series_uid in series_uids or shown & sop_uids:
                return vp
        raise ValueError("show the series it belongs to in a viewport first")

    def show_object_layer(self, path: Path) -> LayerPanel:
        """Draw a SEG's segments or an RTSTRUCT's contours over the viewport showing their series."""
        ds = dcmread(path)
        kind = object_kind(str(ds.SOPClassUID))
        vp = self._viewport_showing(referenced_series_uids(ds))
        volume = self.session.volumes[vp.series_uid]
        if kind == "seg":
            overlay = seg_overlay(ds, volume)
            layer = SegLayer(overlay, volume)
            items = [(s.number, s.label, s.colour) for s in overlay.segments]
        else:
            rois = read_structures(ds)
            layer = StructureLayer(rois, slice_tolerance_mm=min(volume.spacing) / 2)
            items = [(r.number, r.name, r.colour) for r in rois]
        views = self._slice_views(vp)
        for view in views:
            view.object_layers.append(layer)
            view.request_render()
        panel = LayerPanel(f"{ds.get('SeriesDescription', kind.upper())}", items, layer, views, self)
        panel.show()
        self.object_dialogs.append(panel)
        return panel

    def show_key_images(self, path: Path) -> ObjectDialog:
        """Frame a key object selection's images where they are shown, go to the first one, and
        list them (choosing one goes to it)."""
        selection = read_key_selection(dcmread(path))
        vp = self._viewport_showing(sop_uids=set(selection.sop_instance_uids))
        volume = self.session.volumes[vp.series_uid]
        layer = KeyImageLayer(volume, selection.sop_instance_uids)
        for view in self._slice_views(vp):
            view.object_layers.append(layer)
            view.request_render()
        dialog = self.open_object(path)
        dialog.image_requested.connect(lambda uid: self.go_to_image(vp, frozenset({uid})))
        self.go_to_image(vp, selection.sop_instance_uids)
        return dialog

    def go_to_image(self, vp: Viewport, sop_uids: frozenset[str], *, stay_if_shown: bool = False) -> bool:
        """Scroll a stack viewport to the first of these images (or stay on one it shows already);
        False when it cannot show any of them."""
        view = vp.view
        if getattr(view, "stack_plane", None) is None or view.volume is None:
            return False
        indices = key_plane_indices(view.volume, view.stack_plane, sop_uids)
        if indices and not (stay_if_shown and view.current_slice_index() in indices):
            view.set_slice(indices[0])
        return bool(indices)

    def show_image_tags(self) -> ObjectDialog | None:
        """Every element of the image shown in the active view (the acquired image it lies on)."""
        view = self.active_plane()
        volume, plane = getattr(view, "volume", None), getattr(view, "plane", None)
        if volume is None or plane is None:
            self.status_message.emit("Tags: show an image in the active viewport first")
            return None
        rows, cols = plane.pixels.shape[:2]
        source = source_at_lps(volume, plane.to_lps((rows - 1) / 2, (cols - 1) / 2))
        if source is None or not source.path:
            self.status_message.emit("Tags: this view is not one acquired image (a reformat or 3D)")
            return None
        return self.open_object(Path(source.path))

    def apply_presentation_state(self, path: Path) -> None:
        """Window, rotation, flip and displayed area of a GSPS on the viewport showing its images."""
        state = read_presentation_state(dcmread(path))
        vp = self._viewport_showing(sop_uids=set(state.referenced))
        volume = self.session.volumes[vp.series_uid]
        layer = PresentationLayer(state, volume, file_geometry(volume))
        for view in self._slice_views(vp):
            plane = view.plane
            apply_to_view(view.state, state, plane.pixels.shape[:2], plane.pixel_spacing)
            view.object_layers.append(layer)
            view.request_render()
        self.go_to_image(vp, frozenset(state.referenced), stay_if_shown=True)
        self.status_message.emit(f"Presentation state {state.label or ''} applied".replace("  ", " "))

    def open_object(self, path: Path) -> ObjectDialog:
        """Show a non-image object (SR, key objects, PDF, ...) with its tags, beside the images."""
        dialog = ObjectDialog(path, self)
        dialog.finished.connect(lambda _result: self.object_dialogs.remove(dialog))
        self.object_dialogs.append(dialog)
        dialog.show()
        return dialog

    def assign(self, index: int, series_uid: str) -> None:
        if self.session:
            self.session.assign(index, series_uid)

    def _rebuild(self) -> None:
        session = self.session
        if session is None:
            return
        self._remove_viewports()
        cols = session.layout.grid[1]
        for i, slot in enumerate(session.slots):
            vp = Viewport(i, session.viewports[i], self.grid_host)
            vp.activated.connect(self.set_active)
            vp.maximise_requested.connect(self.toggle_maximised)
            vp.series_dropped.connect(self.assign)
            self.grid.addWidget(vp, i // cols, i % cols)
            self.viewports.append(vp)
            if slot.series_uid:
                self._load_into(vp, slot.series_uid, slot.kind)
        self.layout_actions[session.layout].setChecked(True)
        self._show_maximised()
        self._show_active()

    def _load_into(self, vp: Viewport, series_uid: str, kind: ViewKind) -> None:
        session = self.session
        assert session is not None
        if series_uid in session.volumes:
            self._show(vp, series_uid, kind)
            return
        vp.show_message("Loading...")
        info = session.info(series_uid)
        title = f"Loading {info.modality if info else ''} series"
        self._loads = [h for h in self._loads if not h.finished]
        handle = self.tasks.submit(
            title,
            lambda progress, cancel: session.load(series_uid, progress, cancel),
            on_done=lambda _v, vp=vp: self._show_if_current(vp, series_uid, kind),
            on_error=lambda msg, vp=vp: self._failed(vp, msg),
        )
        self._loads.append(handle)

    def _show_if_current(self, vp: Viewport, series_uid: str, kind: ViewKind) -> None:
        if vp in self.viewports and self.session and self.session.slots[vp.index].series_uid == series_uid:
            self._show(vp, series_uid, kind)

    def _failed(self, vp: Viewport, message: str) -> None:
        if vp in self.viewports:
            vp.show_message(f"Cannot show this series:\n{message}")

    def _show(self, vp: Viewport, series_uid: str, kind: ViewKind) -> None:
        assert self.session is not None
        prior = self.session.prior_of(series_uid)
        caption = f"PRIOR {format_date(prior.study_date)} {prior.description}".strip() if prior else ""
        view = vp.show_volume(series_uid, kind, self.session.volumes[series_uid], caption)
        self._set_view_tool(view, self.tool)
        skipped = self.session.skipped.get(series_uid)
        if skipped:
            self.status_message.emit(f"Not loaded from this series: {describe_skipped(skipped)}")
        if vp.index == self.active:
            self._show_active()
        self.loaded.emit(vp.index)

    # -- active viewport and actions --------------------------------------------------------------
    @property
    def active(self) -> int:
        return self.session.active if self.session is not None else 0

    def set_active(self, index: int, focus: str = "") -> None:
        """A click in viewport ``index`` (``focus``: the MPR plane clicked) makes it active."""
        if self.session is not None:
            self.session.activate(index, focus)

    def _show_active(self) -> None:
        """Highlight the active viewport; the slab box and measurement list follow it."""
        if not self.viewports:
            return
        for vp in self.viewports:
            vp.set_active(vp.index == self.active)
        state = self.active_state()
        self.slab_box.blockSignals(True)
        wanted = (state.slab_mm, state.slab_mode) if state is not None and state.slab_mm else (0.0, "mip")
        found = next((i for i in range(self.slab_box.count()) if self.slab_box.itemData(i) == wanted), 0)
        self.slab_box.setCurrentIndex(found)
        self.slab_box.setEnabled(
            self.active_model() is not None and self.active_model().kind in (ViewKind.MPR, ViewKind.STACK)
        )
        self.slab_box.blockSignals(False)
        model = self.active_model()
        self._observe(model.view_states() if model is not None else [])

    def next_viewport(self) -> None:
        self.set_active((self.active + 1) % max(len(self.viewports), 1))

    def toggle_maximised(self, index: int) -> None:
        if self.session is not None:
            self.session.toggle_maximised(index)

    def _show_maximised(self) -> None:
        """One viewport alone (double-clicked), or the grid of the layout."""
        if self.session is None:
            return
        rows, cols = self.session.layout.grid
        alone = self.session.maximised
        for vp in self.viewports:
            vp.setVisible(alone is None or vp.index == alone)
        for r in range(2):
            shown = r < rows and (alone is None or alone // cols == r)
            self.grid.setRowStretch(r, 1 if shown else 0)
        for c in range(2):
            shown = c < cols and (alone is None or alone % cols == c)
            self.grid.setColumnStretch(c, 1 if shown else 0)

    def toggle_mpr(self) -> None:
        """M: the active series in MPR + 3D, or back to 1x1."""
        if self.session is not None:
            self.set_layout(Layout.ONE if self.session.layout is Layout.MPR_3D else Layout.MPR_3D)

    def active_model(self):
        return self.session.active_viewport() if self.session is not None else None

    def active_view(self) -> QWidget | None:
        return self.viewports[self.active].view if self.viewports else None

    def active_plane(self) -> QWidget | None:
        """The 2D view keys act on: the focused MPR plane or the view itself (a cine's frames)."""
        view = self.active_view()
        planes = getattr(view, "views", None)
        model = self.active_model()
        if isinstance(planes, dict) and model is not None:
            return planes.get(model.focus)
        return getattr(view, "display", None) or view

    def active_state(self):
        """The active viewport's 2D view state (None: a 3D view or nothing shown)."""
        model = self.active_model()
        return model.active_state() if model is not None else None

    def apply(self, action: str) -> bool:
        """Run a view key binding (``viewer.view_state.VIEW_BINDINGS``) on the active view."""
        state = self.active_state()
        return state.run(action) if state is not None else False

    def reset_view(self) -> None:
        """Toolbar Reset: the active view's window and transforms, and an MPR's oblique rotation."""
        model = self.active_model()
        if model is not None and model.kind is ViewKind.MPR:
            model.crosshair.reset_rotation()
        self.apply("reset_view")

    @staticmethod
    def _set_view_tool(view: QWidget | None, tool: str) -> None:
        planes = getattr(view, "views", None)
        display = getattr(view, "display", None)
        for target in planes.values() if isinstance(planes, dict) else [display or view]:
            setter = getattr(target, "set_tool", None)
            if setter:
                setter(tool)

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        for vp in self.viewports:
            self._set_view_tool(vp.view, tool)
        if tool in self.tool_actions:
            self.tool_actions[tool].setChecked(True)

    def set_slab(self, thickness_mm: float, mode: str = "mip") -> None:
        """Thick-slab MIP/MinIP/average of the active viewport (0 mm: thin planes)."""
        model = self.active_model()
        if model is not None:
            model.set_slab(thickness_mm, mode)

    def clear_measurements(self) -> None:
        """Every measurement and annotation of the active viewport."""
        model = self.active_model()
        if model is not None:
            model.clear_measurements()

    # -- measurement list -----------------------------------------------------------------------------
    def _observe(self, states: list) -> None:
        for state, callback in self._observed:
            if callback in state.changed:
                state.changed.disconnect(callback)
        self._observed = []
        for state in states:
            callback = self._measurements_changed
            state.changed.connect(callback)
            self._observed.append((state, callback))
        self._fill_measurement_list()

    def _measurements_changed(self, what: str) -> None:
        if what in ("measurements", "selection"):
            self._fill_measurement_list()

    def _fill_measurement_list(self) -> None:
        self.measurement_list.clear()
        view = self.active_plane()
        unit = getattr(view, "unit", "")
        for state, _callback in self._observed:
            for m in state.measurements:
                where = (
                    f"Im {m.plane_key[1] + 1}"
                    if len(m.plane_key) > 1 and isinstance(m.plane_key[1], int)
                    else m.plane_key[0]
                )
                value = m.text(unit).replace("\n", "  ")
                text = f"{m.kind.title()} ({where})" + (f": {value}" if value else "")
                item = QListWidgetItem(text)
                item.setToolTip(text)
                item.setData(MEASUREMENT_ROLE, (state, m))
                self.measurement_list.addItem(item)
                item.setSelected(m is state.selected)
        count = self.measurement_list.count()
        self.measurements_label.setText(f"Measurements ({count})" if count else "No measurements")

    def _measurement_clicked(self, item: QListWidgetItem) -> None:
        state, measurement = item.data(MEASUREMENT_ROLE)
        if measurement in state.measurements:
            state.show_measurement(measurement)

    def presets(self) -> list:
        """W/L presets of the active 2D view (WindowPreset), or 3D rendering presets (names)."""
        model = self.active_model()
        if model is not None and model.kind is ViewKind.VOLUME:
            return list(model.volume.presets)
        getter = getattr(self.active_plane(), "presets", None)
        return list(getter()) if getter else []

    def apply_preset_number(self, number: int) -> bool:
        """Number keys: preset ``number`` (1-based) of the active view; 0 restores the default."""
        model = self.active_model()
        presets = self.presets()
        if model is not None and model.kind is ViewKind.VOLUME:
            if not 1 <= number <= len(presets):
                return False
            model.volume.set_preset(presets[number - 1])
            return True
        state = self.active_state()
        if state is None:
            return False
        if number == 0:
            state.set_window(*state.default_window)
            return True
        if not 1 <= number <= len(presets):
            return False
        state.set_window(presets[number - 1].window, presets[number - 1].level)  # MPR links its planes
        return True

    def _fill_preset_menu(self) -> None:
        self.preset_menu.clear()
        for n, preset in enumerate(self.presets()[:9], 1):
            text = (
                preset if isinstance(preset, str) else f"{preset.name}  ({preset.window:g}/{preset.level:g})"
            )
            action = self.preset_menu.addAction(f"{n}  {text}")
            action.triggered.connect(lambda _=False, n=n: self.apply_preset_number(n))

    def toggle_cine(self) -> None:
        view = self.active_view()
        for name in ("toggle_play", "toggle"):
            fn = getattr(view, name, None)
            if callable(fn):
                fn()
                return
        player = getattr(view, "player", None)
        if player is not None:
            player.toggle()
