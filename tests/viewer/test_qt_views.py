"""The Qt views on a phantom CT whose every voxel is known: pixels, W/L, tools, labels, MPR, cine.

Views are 512x512 and the phantom spans 256 mm, so one screen pixel is 0.5 mm at zoom 1 and
plane pixel (col, row) of a 2 mm grid is centred at screen (4*col + 2, 4*row + 2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from dicom_net.synthetic import DEFAULT_MARKERS, SeriesGeometry, ct_phantom_hu
from viewer.qt.slice_view import StackView
from viewer.volume import Volume

LEFT_MARKER = DEFAULT_MARKERS[0]  # (60, 0, 0) mm, radius 8, 1500 HU


def phantom_volume(geometry: SeriesGeometry | None = None) -> Volume:
    """The synthetic CT phantom sampled on ``geometry`` directly (no files), in HU."""
    g = geometry or SeriesGeometry()
    positions = g.slice_positions()
    voxels = np.stack([ct_phantom_hu(g.pixel_lps(p)) for p in positions]).astype(np.int16)
    direction = np.stack([g.row_dir(), g.col_dir(), g.normal()], axis=1)
    return Volume(
        voxels,
        (g.pixel_spacing[1], g.pixel_spacing[0], g.slice_step),
        tuple(positions[0]),
        direction,
        metadata={
            "modality": "CT",
            "file_windows": [(400.0, 40.0, "")],
            "patient_name": "PHANTOM^CT",
            "series_description": "Phantom CT",
        },
    )


def grey(value: float, width: float, center: float) -> float:
    """The grey level linear windowing gives a value (0..255)."""
    return float(np.clip((value - (center - width / 2)) / width * 255.0, 0, 255))


def screen(col: float, row: float) -> tuple[int, int]:
    return int(4 * col + 2), int(4 * row + 2)


@pytest.fixture
def stack(qtbot):
    view = StackView()
    qtbot.addWidget(view)
    view.resize(512, 512)
    view.show()
    view.set_volume(phantom_volume())
    return view


def wheel(widget, notches: int) -> None:
    pos = QPointF(256, 256)
    event = QWheelEvent(
        pos,
        widget.mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_wheel_scrolls_slices_and_the_marker_appears_where_geometry_says(stack):
    # 64 axial slices 2.5 mm apart centred on z=0: slice k is at z = -78.75 + 2.5 k; the left marker
    # (sphere r=8 mm at z=0) is seen on slices 29..34 only; its centre x=60 mm is column 93.5.
    x, y = screen(93.5, 63.5)
    changes = []
    stack.slice_changed.connect(changes.append)
    stack.set_slice(20)
    assert tuple(stack.render_to_array(overlays=False)[y, x]) == (128, 128, 128)  # soft tissue at W400/L40
    wheel(stack, -11)  # towards the user: next slices
    assert stack.current_slice_index() == 31 and changes == [20, 31]
    image = stack.render_to_array(overlays=False)
    assert tuple(image[y, x]) == (255, 255, 255)  # 1500 HU marker, patient left = screen right
    assert tuple(image[y, 512 - x]) == (128, 128, 128)  # mirror position (patient right) is tissue
    QTest.keyClick(stack, Qt.Key.Key_Up)
    assert stack.current_slice_index() == 30


def test_window_drag_changes_wl_by_step_and_grey_as_computed(stack, qtbot):
    stack.set_slice(31)
    step = stack.state.wl_step_per_pixel
    assert step == pytest.approx((1500 - -1000) / 512)
    seen = []
    stack.window_changed.connect(lambda w, c: seen.append((w, c)))
    QTest.mousePress(stack, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    QTest.mouseMove(stack, QPoint(140, 100))  # +40 px right: wider
    QTest.mouseMove(stack, QPoint(140, 60))  # -40 px up: lower level
    QTest.mouseRelease(stack, Qt.MouseButton.LeftButton, pos=QPoint(140, 60))
    width, center = stack.window_level()
    assert width == pytest.approx(400 + 40 * step) and center == pytest.approx(40 - 40 * step)
    assert seen[-1] == (width, center)
    x, y = screen(40, 63.5)  # soft tissue (40 HU)
    assert abs(int(stack.render_to_array(overlays=False)[y, x, 0]) - grey(40, width, center)) <= 1
    stack.set_window(100, 0)
    assert abs(int(stack.render_to_array(overlays=False)[y, x, 0]) - grey(40, 100, 0)) <= 1  # 178


def test_invert_and_file_and_modality_presets(stack):
    names = [p.name for p in stack.presets()]
    assert names[0] == "File 1" and len(names) > 1
    stack.set_slice(31)
    x, y = screen(40, 63.5)
    stack.set_window(100, 0)
    before = int(stack.render_to_array(overlays=False)[y, x, 0])
    stack.state.toggle_invert()
    assert abs(int(stack.render_to_array(overlays=False)[y, x, 0]) - (255 - before)) <= 1


def test_length_tool_measures_a_known_distance_in_mm(stack):
    measured = []
    stack.measurement_added.connect(measured.append)
    stack.set_tool("length")
    QTest.mouseClick(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(10, 20)))
    QTest.mouseClick(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(40, 60)))
    # 30 columns and 40 rows of 2 mm: 100 mm (to within the half-pixel of a mouse position)
    assert measured[0].kind == "length" and measured[0].value == pytest.approx(100.0, abs=0.3)


def test_rectangle_roi_on_uniform_tissue_reads_its_hu(stack):
    stack.set_slice(20)
    measured = []
    stack.measurement_added.connect(measured.append)
    stack.set_tool("rectangle")
    QTest.mousePress(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(40, 50)))
    QTest.mouseMove(stack, QPoint(*screen(55, 70)))
    QTest.mouseRelease(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(55, 70)))
    stats = measured[0].value
    assert (stats.mean, stats.sd, stats.minimum, stats.maximum) == (40.0, 0.0, 40.0, 40.0)
    assert stats.pixel_count == 16 * 21 and stats.area_mm2 == pytest.approx(30 * 40, rel=0.02)
    assert "HU" in measured[0].text(stack.unit)


def test_orientation_labels_follow_flip_and_rotation(stack):
    labels = stack.orientation_labels()
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("R", "L", "A", "P")
    QTest.keyClick(stack, Qt.Key.Key_H)  # flip horizontally
    labels = stack.orientation_labels()
    assert (labels.left, labels.right, labels.top) == ("L", "R", "A")
    stack.state.rotate_clockwise()  # the displayed image turns: top (A) goes right, left (L) goes up
    labels = stack.orientation_labels()
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("P", "A", "L", "R")
    stack.state.rotate_clockwise(270)
    stack.set_slice(31)
    x, y = screen(93.5, 63.5)
    image = stack.render_to_array(overlays=False)
    assert tuple(image[y, 512 - x]) == (255, 255, 255) and tuple(image[y, x]) == (128, 128, 128)


def test_cursor_reports_pixel_value_in_hu(stack):
    values = []
    stack.cursor_value_changed.connect(values.append)
    stack.set_slice(31)
    QTest.mouseMove(stack, QPoint(*screen(93, 63)))
    assert values[-1]["value"] == 1500.0 and (values[-1]["col"], values[-1]["row"]) == (93, 63)


@pytest.fixture
def volume_view(qtbot):
    from viewer.qt.volume_view import VolumeRenderView

    view = VolumeRenderView()
    qtbot.addWidget(view)
    view.resize(512, 512)
    view.show()
    view.set_volume(phantom_volume())
    return view


def test_mip_volume_rendering_shows_markers_at_their_projections(volume_view):
    volume_view.set_preset("MIP")  # grey ramp over -1000..1500 HU
    image = volume_view.render_to_array(overlays=False)
    for marker in DEFAULT_MARKERS:
        x, y = volume_view.world_to_screen(np.asarray(marker.lps))
        assert abs(int(image[int(y), int(x), 0]) - grey(marker.value, 2500, 250)) <= 2, marker
    left_x, _ = volume_view.world_to_screen(np.asarray(DEFAULT_MARKERS[0].lps))
    head_y = volume_view.world_to_screen(np.asarray(DEFAULT_MARKERS[2].lps))[1]
    assert left_x > 300 and head_y < 236  # anterior view: patient left on the right, head up
    volume_view.rotate(180, 0)  # posterior view: the left marker moves to the screen's left
    assert volume_view.world_to_screen(np.asarray(DEFAULT_MARKERS[0].lps))[0] < 212
    x, y = volume_view.world_to_screen(np.asarray(DEFAULT_MARKERS[0].lps))
    assert int(volume_view.render_to_array(overlays=False)[int(y), int(x), 0]) >= 253


def test_volume_drag_renders_coarse_then_full_quality(volume_view):
    QTest.mousePress(volume_view, Qt.MouseButton.LeftButton, pos=QPoint(200, 256))
    QTest.mouseMove(volume_view, QPoint(260, 256))
    volume_view.render_to_array(overlays=False)
    assert volume_view.interacting and volume_view.mapper.GetImageSampleDistance() == 2.0
    QTest.mouseRelease(volume_view, Qt.MouseButton.LeftButton, pos=QPoint(260, 256))
    volume_view.render_to_array(overlays=False)
    assert not volume_view.interacting and volume_view.mapper.GetImageSampleDistance() == 1.0
    volume_view.reset_camera()
    assert volume_view.describe()["direction_of_projection_lps"] == [0.0, 1.0, 0.0]


@pytest.fixture
def mpr(qtbot):
    from viewer.qt.mpr_view import MprView

    view = MprView()
    qtbot.addWidget(view)
    view.resize(1200, 400)
    view.show()
    view.set_volume(phantom_volume())
    return view


def _pixel(view, lps) -> int:
    point = view.lps_to_screen(np.asarray(lps, dtype=float))
    return int(view.render_to_array(overlays=False)[int(point.y()), int(point.x()), 0])


def test_click_in_axial_moves_coronal_and_sagittal_to_that_point(mpr):
    axial, coronal, sagittal = (mpr.views[n] for n in ("axial", "coronal", "sagittal"))
    marker = np.asarray(LEFT_MARKER.lps)
    assert _pixel(sagittal, marker) == 128  # sagittal starts at x = 0: tissue where the marker would be
    moves = []
    mpr.crosshair_moved.connect(moves.append)
    target = axial.lps_to_screen(marker)
    QTest.mouseClick(axial, Qt.MouseButton.LeftButton, pos=QPoint(int(target.x()), int(target.y())))
    point = mpr.crosshair_position()
    assert abs(point[0] - 60) < 1.5 and abs(point[1]) < 1.5 and point[2] == 0.0  # axial click keeps z
    assert moves and np.allclose(moves[-1], point)
    assert sagittal.current_position() == pytest.approx(
        point[0]
    ) and coronal.current_position() == pytest.approx(point[1])
    assert _pixel(sagittal, marker) == 255 and _pixel(coronal, marker) == 255  # 1500 HU marker in both
    # the coronal view draws the sagittal plane's reference line through the crosshair
    lines = {tuple(c.getRgb()): (a, b) for a, b, c in coronal.lines_lps}
    a, b = lines[(255, 90, 90, 255)]
    assert np.allclose(a[:2], point[:2]) and np.allclose(b[:2], point[:2]) and a[2] != b[2]


def test_oblique_rotation_and_thick_slab(mpr):
    mpr.set_crosshair((0.0, 0.0, 0.0))
    mpr.rotate_crosshair(
        "axial", math.pi / 2
    )  # coronal plane turned 90 deg about z: it becomes sagittal-like
    right, down, normal = mpr.plane_axes("coronal")
    assert np.allclose(right, (0, 1, 0), atol=1e-9) and np.allclose(down, (0, 0, -1), atol=1e-9)
    assert _pixel(mpr.views["coronal"], DEFAULT_MARKERS[1].lps) == 255  # anterior marker now in it
    mpr.reset_rotation()
    # a 20 mm MIP slab of the axial view at z = 10 reaches down to z = 0, where the left marker sits
    mpr.set_crosshair((0.0, 0.0, 10.0))
    axial = mpr.views["axial"]
    assert _pixel(axial, (60.0, 0.0, 10.0)) == 128  # thin plane at z=10 misses the sphere (r=8)
    mpr.set_slab(20, "mip")
    assert _pixel(axial, (60.0, 0.0, 10.0)) == 255
    mpr.set_slab(20, "minip")
    assert _pixel(axial, (60.0, 0.0, 10.0)) == 128


def test_mpr_window_is_linked(mpr):
    mpr.views["coronal"].set_window(1500, -600)
    assert mpr.window_level() == (1500, -600) and mpr.views["sagittal"].window_level() == (1500, -600)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def cine(qtbot, tmp_path):
    from dicom_net.synthetic import ultrasound_cine, write_datasets
    from viewer.loader import load_series
    from viewer.qt.cine_view import CineView

    clock = FakeClock()
    view = CineView(clock=clock)
    qtbot.addWidget(view)
    view.resize(420, 400)
    view.show()
    volume = load_series(write_datasets([ultrasound_cine(frames=30, frame_time_ms=40.0)], tmp_path)).volumes[
        0
    ]
    view.set_volume(volume)
    return view, clock


def _disc_centre(frame: int) -> tuple[float, float]:
    """Column, row of the ultrasound phantom's disc in a frame (30 frames, 320x240)."""
    return 320 * (0.2 + 0.6 * frame / 29), 120.0


def test_cine_plays_at_the_recorded_rate_on_a_fake_clock(cine):
    view, clock = cine
    frames = []
    view.frame_changed.connect(frames.append)
    assert view.player.recorded_fps == pytest.approx(25.0) and view.current_frame() == 0
    view.play()
    assert view.timer.isActive()
    clock.now += 0.039
    assert view.tick() == 0
    clock.now += 0.371  # 410 ms: frame 10 is due
    assert view.tick() == 10 and frames == [10] and view.scrubber.value() == 10
    display = view.display
    assert display.plane.pixels[0, 0, 0] == 10  # the phantom writes the frame number into pixel (0, 0)
    image = view.render_to_array(overlays=False)
    point = display.pixel_to_screen(*_disc_centre(10))
    assert tuple(image[int(point.y()), int(point.x())]) == (220, 220, 220)
    view.pause()
    clock.now += 5
    assert view.tick() == 10 and not view.timer.isActive()


def test_cine_speed_loop_and_scrubber(cine):
    view, clock = cine
    view.scrubber.setValue(20)  # scrub
    assert view.current_frame() == 20
    view.speed_box.setCurrentIndex(3)  # 2x
    view.set_loop("once")
    view.play()
    clock.now += 0.2  # 400 ms of cine time at 2x: from 800 ms to the end (1200 ms)
    assert view.tick() == 29  # once: stops on the last frame
    assert not view.player.playing and view.play_button.text() == "Play"
    view.set_loop("loop")
    view.play()  # from frame 29 (1160 ms); loop wraps around the 1200 ms cine
    clock.now += 1.25  # 2500 ms of cine time at 2x: 3660 ms -> 60 ms into the cine -> frame 1
    assert view.tick() == 1


def test_thousands_of_view_updates_keep_interpreter_reference_counts(stack):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None (every void call) and True (every
    Signal.emit), aborting the process after a few thousand updates; pyproject pins it out."""
    import sys

    seen = []
    stack.slice_changed.connect(seen.append)
    before_none, before_true = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(3000):
        stack.set_slice(i % 2)  # each change: Signal.emit, update() and VTK uploads
    assert len(seen) == 3000
    assert sys.getrefcount(True) - before_true >= -10 and sys.getrefcount(None) - before_none >= -10


def test_radiograph_labels_come_from_patient_orientation(qtbot, tmp_path):
    from dicom_net.synthetic import radiograph, write_datasets
    from viewer.loader import load_series

    view = StackView()
    qtbot.addWidget(view)
    view.resize(400, 480)
    volume = load_series(write_datasets([radiograph(rows=240, columns=200)], tmp_path)).volumes[0]
    view.set_volume(volume)
    labels = view.orientation_labels()  # PA chest: patient left on the image's right, feet down
    assert (labels.left, labels.right, labels.top, labels.bottom) == ("R", "L", "H", "F")
    view.state.flip_horizontal()
    assert view.orientation_labels().right == "R"


def test_zoom_and_pan_move_the_image_by_the_expected_pixels(stack):
    stack.set_slice(31)
    col, row = 93.5, 63.5  # left marker centre, at screen (376, 256) at zoom 1
    stack.state.zoom_by(2.0)  # about the view centre (256, 256): 376 -> 256 + 2 * 120 = 496
    point = stack.pixel_to_screen(col, row)
    assert (point.x(), point.y()) == pytest.approx((496.0, 256.0))
    assert tuple(stack.render_to_array(overlays=False)[256, 494]) == (255, 255, 255)
    QTest.mousePress(stack, Qt.MouseButton.MiddleButton, pos=QPoint(300, 300))
    QTest.mouseMove(stack, QPoint(200, 280))  # drag the image 100 px left, 20 px up
    QTest.mouseRelease(stack, Qt.MouseButton.MiddleButton, pos=QPoint(200, 280))
    point = stack.pixel_to_screen(col, row)
    assert (point.x(), point.y()) == pytest.approx((396.0, 236.0))
    image = stack.render_to_array(overlays=False)
    assert tuple(image[236, 394]) == (255, 255, 255) and tuple(image[256, 494]) == (128, 128, 128)
    assert stack.screen_to_pixel(396.0, 236.0) == pytest.approx((col, row))


def test_angle_and_ellipse_tools_in_the_view(stack):
    stack.set_slice(20)
    measured = []
    stack.measurement_added.connect(measured.append)
    stack.set_tool("angle")
    for col, row in ((40, 20), (20, 20), (20, 40)):  # right angle at (20, 20)
        QTest.mouseClick(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(col, row)))
    assert measured[0].value == pytest.approx(90.0, abs=0.5)
    stack.set_tool("ellipse")
    QTest.mousePress(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(40, 50)))
    QTest.mouseMove(stack, QPoint(*screen(60, 70)))
    QTest.mouseRelease(stack, Qt.MouseButton.LeftButton, pos=QPoint(*screen(60, 70)))
    stats = measured[1].value
    assert measured[1].kind == "ellipse" and stats.mean == 40.0 and stats.sd == 0.0
    assert stats.area_mm2 == pytest.approx(np.pi * 20 * 20, rel=0.02)  # 40 mm diameter circle


def test_overlay_text_reports_location_thickness_image_number_and_window(stack):
    stack.set_slice(31)  # z = -1.25 mm: 1.2 mm towards the feet
    corners = stack.overlay_corners()
    assert corners["bottom_left"][:2] == ["Loc: F 1.2 mm", "Thk: 2.5 mm"]
    assert "Im: 32/64" in corners["top_right"] and "PHANTOM^CT" in corners["top_left"]
    stack.set_window(1500, -600)
    assert stack.overlay_corners()["bottom_right"][0] == "W: 1500 L: -600"
    assert stack.describe()["location"] == "F 1.2 mm" and stack.describe()["slice_index"] == 31


def test_wheel_in_coronal_moves_the_crosshair_one_step_back(mpr):
    mpr.set_crosshair((0.0, 0.0, 0.0))
    wheel(mpr.views["coronal"], -1)  # next coronal plane: 2 mm posterior
    assert mpr.crosshair_position() == pytest.approx((0.0, 1.0, 0.0))  # nearest plane of the 2 mm grid
    assert mpr.views["axial"].lines_lps  # the axial view's coronal reference line moved with it
    a, b, _ = next(line for line in mpr.views["axial"].lines_lps if line[2].getRgb() == (80, 220, 80, 255))
    assert a[1] == pytest.approx(1.0) and b[1] == pytest.approx(1.0)


def test_shift_drag_in_axial_rotates_the_other_planes(mpr):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent

    axial = mpr.views["axial"]
    mpr.set_crosshair((0.0, 0.0, 0.0))
    centre = axial.lps_to_screen(np.zeros(3))
    shift = Qt.KeyboardModifier.ShiftModifier
    start, end = QPointF(centre.x() + 60, centre.y()), QPointF(centre.x(), centre.y() + 60)

    def send(kind, pos, buttons):
        event = QMouseEvent(kind, pos, axial.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons, shift)
        QApplication.sendEvent(axial, event)

    send(QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    send(QEvent.Type.MouseMove, end, Qt.MouseButton.LeftButton)  # mouse now straight below the centre
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    assert mpr.crosshair_position() == pytest.approx((0.0, 0.0, 0.0))  # rotating does not move it
    assert mpr.crosshair.angles["axial"] == pytest.approx(math.pi / 2, abs=0.01)
    right, _, _ = mpr.plane_axes("coronal")  # coronal's right (patient left) turned to posterior
    assert right == pytest.approx((0.0, 1.0, 0.0), abs=0.01)
