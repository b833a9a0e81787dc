"""Measurements belong to the view's state: they survive scrolling away and back, reappear only on
their own plane, and export as plain JSON data with their values and where they were drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from dicom_net.synthetic import SeriesGeometry
from tests.viewer.test_qt_views import phantom_volume, screen
from viewer.qt.slice_view import StackView
from viewer.reslice import Oblique
from viewer.tools import measure
from viewer.view_state import ViewState

# the phantom: 128x128 pixels of 2 mm from x, y = -127 mm; slice k at z = -78.75 + 2.5 k
Z_OF_SLICE_20 = -78.75 + 2.5 * 20


@pytest.fixture
def stack(qtbot):
    view = StackView()
    qtbot.addWidget(view)
    view.resize(512, 512)
    view.show()
    view.set_volume(phantom_volume())
    return view


def _yellow(image: np.ndarray, col: float, row: float) -> bool:
    """The measurement colour (255, 220, 0), antialiased over two screen rows, at a plane pixel."""
    x, y = screen(col, row)
    return any(int(r) > 150 and int(g) > 130 and int(b) < 40 for r, g, b in image[y - 2 : y + 1, x])


def _draw(view: StackView, tool: str, *points: tuple[float, float]) -> None:
    view.set_tool(tool)
    for col, row in points:
        QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(*screen(col, row)))


def test_measurements_survive_scrolling_away_and_back(stack):
    stack.set_slice(20)
    _draw(stack, "length", (10, 20), (40, 20))
    assert _yellow(stack.render_to_array(), 25, 20)  # the line is drawn over air
    stack.set_slice(25)
    assert stack.state.measurements_on(stack.plane_key) == [] and stack.describe()["measurements"] == []
    assert not _yellow(stack.render_to_array(), 25, 20)
    stack.set_slice(20)
    shown = stack.state.measurements_on(stack.plane_key)
    assert [m.kind for m in shown] == ["length"]
    assert _yellow(stack.render_to_array(), 25, 20)
    described = stack.describe()["measurements"]
    assert len(described) == 1 and described[0]["length"] == pytest.approx(60.0, abs=0.3)


def test_measurements_export_as_plain_json_with_values_and_place(stack):
    stack.set_slice(20)
    _draw(stack, "length", (10, 20), (40, 20))
    _draw(stack, "rectangle", (40, 50), (60, 70))  # uniform soft tissue: 40 HU
    stack.set_slice(30)
    _draw(stack, "angle", (20, 40), (20, 60), (40, 60))
    records = json.loads(json.dumps(stack.state.export_measurements(stack.unit), allow_nan=False))
    length, roi, angle = records
    assert length["kind"] == "length" and length["unit"] == "mm"
    assert length["length"] == pytest.approx(60.0, abs=0.3)
    assert length["plane"] == ["native", 20]
    (x0, y0, z0), (x1, y1, z1) = length["points_lps"]
    assert (x0, x1) == (pytest.approx(-107.0, abs=0.5), pytest.approx(-47.0, abs=0.5))
    assert y0 == y1 == pytest.approx(-87.0, abs=0.5) and z0 == z1 == pytest.approx(Z_OF_SLICE_20)
    assert roi["kind"] == "rectangle" and roi["unit"] == "HU" and roi["plane"] == ["native", 20]
    assert (roi["mean"], roi["sd"], roi["min"], roi["max"]) == (40.0, 0.0, 40.0, 40.0)
    assert roi["area"] == pytest.approx(40.0 * 40.0, rel=0.03) and roi["area_unit"] == "mm\u00b2"
    assert angle["plane"] == ["native", 30] and angle["angle_deg"] == pytest.approx(90.0, abs=0.5)
    assert "HU" in roi["text"]


def test_same_volume_in_another_plane_keeps_measurements_a_new_volume_clears_them(stack):
    volume = stack.volume
    stack.set_slice(20)
    _draw(stack, "length", (10, 20), (40, 20))
    stack.set_volume(volume, plane="coronal")
    assert len(stack.measurements) == 1 and stack.state.measurements_on(stack.plane_key) == []
    stack.set_volume(volume)
    stack.set_slice(20)
    assert len(stack.state.measurements_on(stack.plane_key)) == 1
    stack.set_volume(phantom_volume(SeriesGeometry(slices=8)))
    assert stack.measurements == [] and stack.state.export_measurements() == []


def test_view_state_store_emits_and_exports_oblique_planes_as_plain_data():
    state = ViewState()
    seen = []
    state.changed.connect(seen.append)
    image = np.full((8, 8), 7, dtype=np.int16)
    key = (Oblique((1.0, 0.0, 0.0), (0.0, 0.6, -0.8)), np.float64(2.5))
    m = measure("ellipse", [(1.0, 1.0), (5.0, 5.0)], image, (0.5, 0.5), key)
    state.add_measurement(m)
    record = json.loads(json.dumps(state.export_measurements("HU")))[0]
    assert record["plane"] == [{"row_dir": [1.0, 0.0, 0.0], "col_dir": [0.0, 0.6, -0.8], "center": None}, 2.5]
    assert record["mean"] == 7.0 and record["points_lps"] is None
    assert record["area"] == pytest.approx(np.pi * 2.0 * 2.0 / 4)
    assert state.measurements_on(key) == [m] and state.measurements_on(("native", 0)) == []
    state.remove_measurement(m)
    state.clear_measurements()  # nothing left: no second event
    assert seen == ["measurements", "measurements"] and state.measurements == []
