"""A morning's reading through the real widgets: each test drives one break of issue 9.

Demo study (see test_reading_gui): CT 40 x 128^2 (2.5 mm pixels, 1.5 mm slices) with a 1500 HU
sphere (r = 8 mm) at LPS (60, 0, 0), a DX radiograph and a US cine. Clicks and keys go through
Qt (QTest) to the widgets the reader sees; what is checked is read back from the widgets, the
rendered pixels and the reading model.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QTextBrowser

from app.assistant.ai_inputs import visual_item_for
from app.assistant.chat import default_scope, screen_context_from
from app.assistant.model_service import ModelService
from app.gui.chat_panel import ChatPanel
from app.reading.layouts import Layout, ViewKind

from .conftest import rgb
from .test_reading_gui import MARKER_LPS, wait_views

LINE_COLOURS = {(80, 220, 80), (255, 90, 90), (80, 160, 255)}  # MPR reference lines


def at(point: QPointF) -> QPoint:
    return QPoint(int(round(point.x())), int(round(point.y())))


def click(widget, point: QPointF, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton, modifier, at(point))


def drag(widget, start: QPointF, end: QPointF, steps: int = 4) -> None:
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(start))
    for n in range(1, steps + 1):
        QTest.mouseMove(widget, at(start + (end - start) * (n / steps)))
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(end))


@pytest.fixture
def ct(demo_archive, make_window, qtbot):
    """The CT opened as the reader finds it: a 1x1 stack."""
    window = make_window(demo_archive)
    session = window.open_study(window.browser_logic.rows[0].study_uid)
    wait_views(qtbot, window, 1)
    return window, session


def mpr_3d(window, qtbot):
    qtbot.keyClick(window, Qt.Key.Key_M)
    wait_views(qtbot, window, 2)
    return window.reading.viewports[0].view, window.reading.viewports[1].view


def two_by_two(window, qtbot):
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    wait_views(qtbot, window, 4)
    modality = {
        vp.index: window.session.info(vp.series_uid).modality
        for vp in window.reading.viewports
        if vp.series_uid
    }
    return {m: window.reading.viewports[i] for i, m in modality.items()}


def model_sees_the_view(view, frame: np.ndarray) -> None:
    """Each model pixel (grey, before resizing to the model grid) equals the grey the view renders
    at the same place of the image on screen (sampled on a grid of pixel centres, +-1 for VTK's
    own windowing arithmetic)."""
    rect = view.image_rect()
    shown = rgb(view)
    ratio = view.devicePixelRatioF()
    h, w = frame.shape[:2]
    for i in np.linspace(0, h - 1, 9).astype(int):
        for j in np.linspace(0, w - 1, 9).astype(int):
            x = rect.left() + (j + 0.5) * rect.width() / w
            y = rect.top() + (i + 0.5) * rect.height() / h
            got = int(shown[int(y * ratio), int(x * ratio), 0])
            assert abs(got - int(frame[i, j, 0])) <= 1, (i, j, got, int(frame[i, j, 0]))


# -- break 1: any click activates its viewport --------------------------------------------------
def test_a_click_in_a_cine_or_an_mpr_pane_or_the_3d_view_activates_it(ct, qtbot):
    window, session = ct
    ports = two_by_two(window, qtbot)
    cine = ports["US"].view
    click(cine.display, QPointF(cine.display.width() / 2, cine.display.height() / 2))
    assert window.reading.active == ports["US"].index
    qtbot.keyClick(window, Qt.Key.Key_Space)  # Space goes to the cine clicked
    assert cine.player.playing
    qtbot.keyClick(window, Qt.Key.Key_Space)
    mpr, volume_view = mpr_3d(window, qtbot)
    coronal = mpr.views["coronal"]
    click(coronal, QPointF(10, 10))
    assert window.reading.active == 0 and session.active_viewport().focus == "coronal"
    assert window.reading.active_plane() is coronal
    click(volume_view, QPointF(volume_view.width() / 2, volume_view.height() / 2))
    assert window.reading.active == 1 and session.active_viewport().kind is ViewKind.VOLUME


# -- break 2: 3D presets apply ------------------------------------------------------------------
def test_3d_presets_apply_from_the_menu_and_the_number_keys(ct, qtbot):
    window, _session = ct
    _mpr, volume_view = mpr_3d(window, qtbot)
    click(volume_view, QPointF(volume_view.width() / 2, volume_view.height() / 2))
    before = rgb(volume_view)
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert volume_view.preset == "MIP" and window.reading.presets()[2] == "MIP"
    mip = rgb(volume_view)
    assert np.abs(mip.astype(int) - before.astype(int)).sum() > 0  # the rendering changed
    window.reading._fill_preset_menu()
    actions = window.reading.preset_menu.actions()
    assert [a.text() for a in actions] == ["1  CT bone", "2  CT soft tissue", "3  MIP"]
    actions[1].trigger()
    assert volume_view.preset == "CT soft tissue"


# -- break 3: the AI gets what is on screen ------------------------------------------------------
def test_the_ai_is_sent_the_image_of_the_active_pane_in_any_plane_slab_and_orientation(ct, qtbot):
    window, session = ct
    panel = ChatPanel(ModelService(None), lambda: screen_context_from(window), window)
    qtbot.addWidget(panel)
    volume = session.volumes[session.slots[0].series_uid]
    stack = window.reading.viewports[0].view
    stack.state.flip_horizontal()
    stack.state.rotate_clockwise()
    stack.state.set_slice(25)
    panel.refresh_from_screen()
    assert panel.chip_texts[1:3] == ["Plane native", "slice 26"]
    assert "Cine" not in [panel.kind_box.itemText(i) for i in range(panel.kind_box.count())]
    with pytest.raises(ValueError, match="does not fit"):
        default_scope(screen_context_from(window), "cine")
    model_sees_the_view(stack, visual_item_for(volume, panel.scope.view()).frames[0])

    mpr, volume_view = mpr_3d(window, qtbot)
    axial, coronal = mpr.views["axial"], mpr.views["coronal"]
    click(axial, QPointF(5, 5))
    axial.state.set_slice(0)  # the axial pane at slice 1
    panel.refresh_from_screen()
    assert panel.chip_texts[1:3] == ["Plane axial", "slice 1"]
    click(volume_view, QPointF(volume_view.width() / 2, volume_view.height() / 2))
    panel.refresh_from_screen()  # the 3D view shows no single image: the series is offered, not "slice 61"
    assert panel.scope.kind == "volume"
    assert "Current image" not in [panel.kind_box.itemText(i) for i in range(panel.kind_box.count())]
    assert not any(text.startswith("slice") for text in panel.chip_texts)

    QTest.mouseClick(coronal, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(5, 5))
    qtbot.keyClick(window, Qt.Key.Key_Down)  # scroll the coronal pane
    window.reading.set_slab(10.0, "mip")
    panel.refresh_from_screen()
    assert panel.scope.kind == "image" and panel.chip_texts[1] == "Plane coronal"
    assert "MIP 10 mm" in panel.chip_texts[2]
    model_sees_the_view(coronal, visual_item_for(volume, panel.scope.view()).frames[0])

    mpr.rotate_crosshair("axial", 0.4)  # coronal and sagittal become oblique
    sagittal = mpr.views["sagittal"]
    click(sagittal, QPointF(5, 5))
    panel.refresh_from_screen()
    assert panel.chip_texts[1] == "Plane oblique"
    model_sees_the_view(sagittal, visual_item_for(volume, panel.scope.view()).frames[0])


# -- break 4: one key table ------------------------------------------------------------------------
def test_page_down_moves_ten_slices_in_the_window_as_the_help_says(ct, qtbot):
    window, _session = ct
    stack = window.reading.viewports[0].view
    stack.state.set_slice(5)
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    assert stack.state.slice_index == 15
    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    qtbot.keyClick(window, Qt.Key.Key_Down)
    assert stack.state.slice_index == 6
    text = window.show_shortcuts().findChild(QTextBrowser).toPlainText()
    assert "PgDown" in text and "10 slices / frames on" in text
    assert "Del / Backspace" in text and "Double-click" in text


# -- break 5: measurements and annotations ------------------------------------------------------------
def test_measurements_select_move_delete_clear_list_and_annotate(ct, qtbot):
    window, _session = ct
    reading = window.reading
    stack = reading.viewports[0].view
    stack.state.set_slice(20)
    p = stack.pixel_to_screen
    reading.set_tool("ellipse")
    click(stack, p(30, 60))  # a single click: no ROI
    QTest.mouseDClick(stack, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(p(30, 60)))
    assert stack.state.measurements == []
    reading.set_tool("length")
    drag(stack, p(20, 70), p(50, 70))
    (length,) = stack.state.measurements
    assert length.value == pytest.approx(75.0, abs=1.5)  # 30 columns of 2.5 mm
    assert reading.measurement_list.count() == 1 and "mm" in reading.measurement_list.item(0).text()
    reading.set_tool("window")
    click(stack, p(35, 70))  # on the line: selected
    assert stack.state.selected is length
    drag(stack, p(50, 70), p(50, 90))  # move its second handle down 20 rows
    (moved,) = stack.state.measurements
    assert moved.value == pytest.approx(np.hypot(30, 20) * 2.5, abs=1.5)
    assert reading.measurement_list.item(0).text() != ""
    stack.state.set_slice(3)  # scroll away; the list brings the reader back
    reading.measurement_list.itemClicked.emit(reading.measurement_list.item(0))
    assert stack.state.slice_index == 20 and stack.state.selected is moved
    qtbot.keyClick(window, Qt.Key.Key_Delete)
    assert stack.state.measurements == [] and reading.measurement_list.count() == 0
    reading.set_tool("arrow")
    drag(stack, p(10, 10), p(40, 40))
    reading.set_tool("text")
    stack.ask_text = lambda: "cyst?"
    click(stack, p(60, 20))
    assert [(m.kind, m.label) for m in stack.state.measurements] == [("arrow", ""), ("text", "cyst?")]
    assert [r["label"] for r in stack.state.export_measurements()] == ["", "cyst?"]
    reading.set_tool("window")
    click(stack, p(25, 25))  # on the arrow
    qtbot.keyClick(window, Qt.Key.Key_Backspace)
    assert [m.kind for m in stack.state.measurements] == ["text"]
    reading.clear_measurements()
    assert stack.state.measurements == [] and reading.measurements_label.text() == "No measurements"


# -- break 6: slab per viewport, crosshair only with its tool --------------------------------------------
def test_slab_belongs_to_the_viewport_and_resets_for_a_new_series(ct, qtbot):
    window, _session = ct
    reading = window.reading
    reading.slab_box.setCurrentText("MIP 10 mm")
    assert reading.viewports[0].view.plane.slab_mm == 10.0
    qtbot.keyClick(window, Qt.Key.Key_Right)  # next series in this viewport, then back
    qtbot.keyClick(window, Qt.Key.Key_Left)
    wait_views(qtbot, window, 1)
    stack = reading.viewports[0].view
    assert stack.plane.slab_mm == 0.0 and reading.slab_box.currentText() == "Thin"
    assert not any("Slab" in line for line in stack.overlay_corners()["bottom_left"])
    mpr, _ = mpr_3d(window, qtbot)
    assert mpr.slab_mm == 0.0 and reading.slab_box.currentText() == "Thin"


def test_the_crosshair_moves_only_with_the_crosshair_tool_or_ctrl(ct, qtbot):
    window, _session = ct
    mpr, _ = mpr_3d(window, qtbot)
    axial = mpr.views["axial"]
    start = mpr.crosshair_position()
    target = axial.lps_to_screen(MARKER_LPS)
    width = axial.state.window_width
    drag(axial, target, target + QPointF(30, 0))  # W/L tool: the window changes, not the crosshair
    assert np.allclose(mpr.crosshair_position(), start) and axial.state.window_width != width
    click(axial, target, Qt.KeyboardModifier.ControlModifier)
    assert abs(mpr.crosshair_position()[0] - 60.0) < 1.5
    window.reading.set_tool("crosshair")
    click(axial, axial.lps_to_screen(np.array([-30.0, 0.0, 0.0])))
    assert abs(mpr.crosshair_position()[0] + 30.0) < 1.5


# -- break 7: layout, maximise, separated panes, letters, clipped lines, oblique --------------------------
def test_layout_is_remembered_per_modality_and_double_click_maximises(ct, qtbot):
    window, session = ct
    mpr_3d(window, qtbot)
    assert window.preferred_layouts == {"CT": Layout.MPR_3D}
    window.save_ui_state()
    session = window.open_study(session.study_uid)  # the next CT opens as the reader left the last
    wait_views(qtbot, window, 2)
    assert session.layout is Layout.MPR_3D
    mpr = window.reading.viewports[0].view
    coronal = mpr.views["coronal"]
    QTest.mouseDClick(coronal, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(10, 10))
    qtbot.waitUntil(lambda: not window.reading.viewports[1].isVisible())
    grid = window.reading.grid_host
    qtbot.waitUntil(lambda: window.reading.viewports[0].height() > grid.height() * 0.9)
    QTest.mouseDClick(coronal, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(10, 10))
    qtbot.waitUntil(lambda: window.reading.viewports[1].isVisible())
    qtbot.waitUntil(lambda: window.reading.viewports[0].height() < grid.height() * 0.6)


def test_mpr_panes_are_separated_their_texts_never_overlap_and_lines_stay_on_the_image(ct, qtbot):
    window, _session = ct
    mpr, _ = mpr_3d(window, qtbot)
    window.reading.slab_box.setCurrentText("MIP 10 mm")
    views = [mpr.views[n] for n in ("axial", "coronal", "sagittal")]
    qtbot.waitUntil(lambda: all(view.width() > 120 for view in views))  # laid out in the grid
    shot = mpr.grab().toImage()
    for left, right in zip(views, views[1:]):
        assert right.geometry().left() - left.geometry().right() > 3  # a visible gutter
        gutter = shot.pixelColor((left.geometry().right() + right.geometry().left()) // 2, mpr.height() // 2)
        assert min(gutter.red(), gutter.green(), gutter.blue()) > 60  # grey between black images
    for view in views:
        frame = view.render_to_array(overlays=True)
        texts = view.overlay_texts
        drawn = [t for t, _ in texts]
        assert "Slab: 10 mm MIP" in drawn
        letters = view.orientation_labels()
        assert {letters.left, letters.right, letters.top, letters.bottom} <= set(drawn)
        for n, (_, a) in enumerate(texts):
            for _, b in texts[n + 1 :]:
                assert not a.intersects(b)
        rect = view.image_rect()
        ratio = view.devicePixelRatioF()
        outside = np.ones(frame.shape[:2], dtype=bool)
        outside[
            max(int(rect.top() * ratio) - 1, 0) : int(rect.bottom() * ratio) + 2,
            max(int(rect.left() * ratio) - 1, 0) : int(rect.right() * ratio) + 2,
        ] = False  # (one pixel of antialiasing around the image's edge)
        pixels = frame[outside].reshape(-1, 3).astype(int)
        for colour in LINE_COLOURS:  # no crosshair line beyond the image
            assert not (np.abs(pixels - colour).sum(axis=1) < 60).any(), (view.name, colour)


def test_oblique_mpr_by_dragging_a_rotation_handle(ct, qtbot):
    window, _session = ct
    mpr, _ = mpr_3d(window, qtbot)
    window.reading.set_tool("crosshair")
    axial = mpr.views["axial"]
    axial.render_to_array()
    handle = max(axial.rotation_handles(), key=lambda h: h.x())  # on the coronal line, to the right
    centre = axial.lps_to_screen(mpr.crosshair_position())
    radius = handle.x() - centre.x()
    end = QPointF(centre.x() + radius * np.cos(0.5), centre.y() + radius * np.sin(0.5))
    start = mpr.crosshair_position()
    drag(axial, handle, end)
    assert mpr.crosshair.angles["axial"] == pytest.approx(0.5, abs=0.05)
    assert np.allclose(mpr.crosshair_position(), start)  # rotating does not move the crosshair
    assert mpr.views["coronal"].state.plane == "oblique" and mpr.views["sagittal"].state.plane == "oblique"
    window.reading.reset_view()  # the toolbar's Reset straightens the planes again
    assert mpr.crosshair.angles["axial"] == 0.0 and mpr.views["coronal"].state.plane == "coronal"
