"""Reading through the real widgets: hanging, scroll, W/L keys, layouts, drag of a series; pixels checked.

Demo CT: 128 x 128 pixels of 2.5 mm centred on the patient origin, 40 axial slices 1.5 mm apart;
soft tissue 40 HU inside the body, a 1500 HU sphere (r = 8 mm) at LPS (60, 0, 0) on the
patient's left. Windowed grey = (HU - (L - W/2)) / W * 255, clipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDropEvent

from app.gui.study_browser import SERIES_MIME
from app.reading.layouts import Layout, ViewKind
from app.reading.study_list import format_date

from .conftest import rgb, save_screenshot

MARKER_LPS = np.array([60.0, 0.0, 0.0])


def grey(hu: float, width: float, level: float) -> float:
    return float(np.clip((hu - (level - width / 2)) / width * 255, 0, 255))


def pixel_at(view, col: float, row: float) -> int:
    """Rendered grey value of the image pixel (col, row) of a 2D view (VTK image, no overlays)."""
    p = view.pixel_to_screen(col, row)
    frame = rgb(view)
    ratio = view.devicePixelRatioF()
    return int(frame[int(p.y() * ratio), int(p.x() * ratio), 0])


def wait_views(qtbot, window, count: int) -> None:
    """Wait until the grid has ``count`` viewports and every one with a series shows its view."""

    def ready() -> bool:
        slots = window.session.slots
        return len(window.reading.viewports) == count and all(
            vp.view is not None for vp, slot in zip(window.reading.viewports, slots) if slot.series_uid
        )

    qtbot.waitUntil(ready, timeout=60000)


@pytest.fixture
def reading(demo_archive, make_window, qtbot):
    window = make_window(demo_archive)
    ct_uid = window.browser_logic.rows[0].study_uid
    session = window.open_study(ct_uid)
    wait_views(qtbot, window, 1)
    return window, session


def test_ct_opens_as_a_stack_then_mpr_plus_3d_one_key_away_with_correct_grey_values(
    reading, qtbot, screenshot_dir
):
    window, session = reading
    assert session.layout is Layout.ONE and type(window.reading.viewports[0].view).__name__ == "StackView"
    qtbot.keyClick(window, Qt.Key.Key_M)  # MPR + 3D of the shown series
    wait_views(qtbot, window, 2)
    assert session.layout is Layout.MPR_3D
    banner = window.reading.patient_bar
    assert banner.isVisible()
    assert banner.text() == (
        f"DEMO, PATIENT  |  ID DEMO0001  |  born 1965-04-12 F  |  CT/DX/US Demo study "
        f"(generated phantom)  |  {format_date(session.study.study_date)}  |  Acc DEMO-ACC-1"
    )
    kinds = [type(vp.view).__name__ for vp in window.reading.viewports]
    assert kinds == ["MprView", "VolumeRenderView"]
    mpr = window.reading.viewports[0].view
    axial = mpr.views["axial"]
    volume = session.volumes[session.slots[0].series_uid]
    # crosshair starts at the volume centre (z = 0) where the left marker is cut through its middle
    col, row, _ = volume.lps_to_index(MARKER_LPS)
    assert abs(pixel_at(axial, col, row) - grey(1500, 400, 40)) <= 1  # 255
    assert abs(pixel_at(axial, 64 - 0.5 - 30, row) - grey(40, 400, 40)) <= 1  # soft tissue, 127.5
    assert pixel_at(axial, 1, 1) == 0  # air
    save_screenshot(window, screenshot_dir / "reading_mpr_3d.png")
    # a 20 mm MIP slab from the toolbar: the marker (r = 8 mm at z = 0) stays at 1500 HU when the
    # crosshair moves 6 mm off its centre, where a thin plane would cut only its 5.3 mm-radius rim
    mpr.set_crosshair(np.array([0.0, 0.0, 6.0]))
    edge_col = col + 6.0 / 2.5  # 6 mm towards the patient's left of the marker centre
    assert abs(pixel_at(axial, edge_col, row) - grey(40, 400, 40)) <= 1  # thin: outside the rim
    window.reading.slab_box.setCurrentText("MIP 20 mm")
    assert mpr.slab_mm == 20.0 and mpr.slab_mode == "mip"
    assert pixel_at(axial, edge_col, row) == 255


def test_scroll_and_number_key_presets_in_1x1(reading, qtbot, screenshot_dir):
    window, session = reading
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)  # layout 1x1
    wait_views(qtbot, window, 1)
    view = window.reading.viewports[0].view
    assert type(view).__name__ == "StackView" and session.layout is Layout.ONE
    volume = view.volume
    z = np.array([volume.index_to_lps([0, 0, k])[2] for k in range(volume.voxels.shape[0])])
    k_marker = int(np.argmin(np.abs(z - MARKER_LPS[2])))
    col, row, _ = volume.lps_to_index(MARKER_LPS)
    # start 7 slices (10.5 mm) away from the marker's centre: outside its 8 mm radius
    view.state.set_slice(k_marker - 7)
    window.activateWindow()
    assert abs(pixel_at(view, col, row) - grey(40, 400, 40)) <= 1
    for _ in range(7):
        qtbot.keyClick(window, Qt.Key.Key_Down)
    assert view.state.slice_index == k_marker
    assert pixel_at(view, col, row) == 255
    names = [p.name for p in window.reading.presets()]
    lung = names.index("Lung") + 1
    qtbot.keyClick(window, getattr(Qt.Key, f"Key_{lung}"))
    assert (view.state.window_width, view.state.window_center) == (1500, -600)
    body_col = 64 - 0.5 - 30
    assert abs(pixel_at(view, body_col, row) - grey(40, 1500, -600)) <= 1  # 236
    assert abs(pixel_at(view, 1, 1) - grey(-1000, 1500, -600)) <= 1  # air 59.5
    qtbot.keyClick(window, Qt.Key.Key_0)  # back to the default window
    assert (view.state.window_width, view.state.window_center) == (400, 40)
    save_screenshot(window, screenshot_dir / "reading_1x1_stack.png")


def test_2x2_layout_drop_and_linked_scrolling(reading, qtbot, screenshot_dir):
    window, session = reading
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    wait_views(qtbot, window, 4)
    shown = {session.info(s.series_uid).modality for s in session.slots if s.series_uid}
    assert shown == {"CT", "DX", "US"}
    ct_uid = next(s.series_uid for s in session.series if s.modality == "CT")
    # drop the CT series onto the empty viewport 3 as a user would drag it from the strip
    mime = QMimeData()
    mime.setData(SERIES_MIME, ct_uid.encode())
    target = window.reading.viewports[3]
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    target.dropEvent(drop)
    wait_views(qtbot, window, 4)
    ct_ports = [vp for vp in window.reading.viewports if vp.series_uid == ct_uid]
    assert len(ct_ports) == 2 and all(vp.kind is ViewKind.STACK for vp in ct_ports)
    a, b = (vp.view for vp in ct_ports)
    a.state.set_slice(5)  # same frame of reference: the other CT viewport follows
    assert b.state.slice_index == 5
    # the radiograph is hung in a stack view and shows its windowed pixels
    dx = next(vp.view for vp in window.reading.viewports if session.info(vp.series_uid).modality == "DX")
    assert dx.volume.voxels.shape[0] == 1
    save_screenshot(window, screenshot_dir / "reading_2x2.png")
    # the ultrasound cine: Space plays/pauses, Down steps a frame, in the active viewport
    us_port = next(vp for vp in window.reading.viewports if session.info(vp.series_uid).modality == "US")
    assert type(us_port.view).__name__ == "CineView"
    window.reading.set_active(us_port.index)
    cine = us_port.view
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert cine.player.playing
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not cine.player.playing
    cine.seek(0)
    qtbot.keyClick(window, Qt.Key.Key_Down)
    assert cine.current_frame() == 1
