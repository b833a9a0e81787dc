"""The plain-Python view model: slices, W/L, transforms and orientation labels without Qt."""

import numpy as np

from viewer.view_state import Crosshair, ViewState, patient_orientation_axes

X, Y, Z = np.eye(3)


def test_slice_is_clamped_and_emits_once_per_change():
    state = ViewState()
    seen = []
    state.changed.connect(seen.append)
    state.set_slice_count(10)
    state.scroll(3)
    state.scroll(100)
    state.scroll(100)  # already at the end: no event
    assert state.slice_index == 9
    assert seen == ["slice", "slice"]


def test_window_drag_moves_width_and_level_by_step_per_pixel():
    state = ViewState()
    state.set_window(400, 40)
    state.wl_step_per_pixel = 4.0
    state.drag_window(10, -5)
    assert (state.window_width, state.window_center) == (440.0, 20.0)
    state.drag_window(-1000, 0)
    assert state.window_width == 1.0  # never zero or negative


def test_axial_labels_radiological_then_follow_flip_and_rotation():
    state = ViewState()
    # axial image: columns run to patient left (+x), rows to posterior (+y)
    assert state.orientation_labels(X, Y) == _labels("R", "L", "A", "P")
    state.flip_horizontal()
    assert state.orientation_labels(X, Y) == _labels("L", "R", "A", "P")
    state.flip_horizontal()
    state.rotate_clockwise()  # anterior (top) turns to the right side
    assert state.orientation_labels(X, Y) == _labels("P", "A", "R", "L")
    state.flip_vertical()
    assert state.orientation_labels(X, Y) == _labels("P", "A", "L", "R")


def test_coronal_labels():
    state = ViewState()
    assert state.orientation_labels(X, -Z) == _labels("R", "L", "H", "F")


def test_display_matrix_rotation_maps_image_up_to_screen_right():
    state = ViewState()
    state.rotate_clockwise()
    np.testing.assert_allclose(state.display_matrix() @ [0, -1], [1, 0], atol=1e-12)
    state.rotate_clockwise(270)
    np.testing.assert_allclose(state.display_matrix(), np.eye(2), atol=1e-12)


def test_reset_restores_series_window_and_transforms():
    state = ViewState()
    state.default_window = (1500.0, -600.0)
    state.set_window(10, 10)
    state.toggle_invert()
    state.zoom_by(3)
    state.reset()
    assert state.describe()["window_width"] == 1500.0 and state.window_center == -600.0
    assert not state.invert and state.zoom == 1.0


def test_key_bindings_drive_the_model():
    state = ViewState()
    state.set_slice_count(20)
    state.key_bindings()["PgDown"]()
    state.key_bindings()["I"]()
    assert state.slice_index == 10 and state.invert


def test_crosshair_emits_only_on_real_moves():
    cross = Crosshair()
    moves = []
    cross.moved.connect(moves.append)
    cross.move_to((1.0, 2.0, 3.0))
    cross.move_to((1.0, 2.0, 3.0))
    assert len(moves) == 1 and tuple(moves[0]) == (1.0, 2.0, 3.0)


def _labels(left, right, top, bottom):
    from viewer.view_state import OrientationLabels

    return OrientationLabels(left=left, right=right, top=top, bottom=bottom)


def test_flip_then_rotate_acts_on_the_displayed_image():
    state = ViewState()
    state.flip_horizontal()
    state.rotate_clockwise()
    assert state.orientation_labels(X, Y) == _labels("P", "A", "L", "R")
    assert (state.flip_h, state.rotation) == (True, 270)  # same as rotating 270 deg, then mirroring
    state.flip_horizontal()
    state.rotate_clockwise(90)  # mirror, turn, mirror, turn: back to the original display
    assert (state.flip_h, state.rotation) == (False, 0)


def test_patient_orientation_axes_of_projection_images():
    right, down = patient_orientation_axes(["L", "F"])
    assert tuple(right) == (1, 0, 0) and tuple(down) == (0, 0, -1)
    right, _ = patient_orientation_axes(["LA", "F"])
    np.testing.assert_allclose(right, np.array([1, -1, 0]) / np.sqrt(2))
    assert patient_orientation_axes([]) is None and patient_orientation_axes(["X", "F"]) is None
