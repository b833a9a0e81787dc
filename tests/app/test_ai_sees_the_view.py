"""The model is sent the pixels the view shows: every plane, slab and on-screen transform.

A real ``StackView`` shows the demo CT in a plane (axial, coronal, sagittal, the acquired one or
an oblique), thin or as a slab, flipped and turned; the AI input is built from the view's state
as the chat does (``AIView.from_view_state`` -> ``visual_item_for``) and compared, pixel by
pixel on a grid, with what VTK rendered on screen (before any resizing to the model's grid).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.assistant.ai_inputs import AIView, visual_item_for
from viewer.loader import load_volume
from viewer.qt.slice_view import StackView
from viewer.reslice import Oblique

from .test_reading_interaction import model_sees_the_view

PLANES = {
    "axial": "axial",
    "coronal": "coronal",
    "sagittal": "sagittal",
    "native": "native",
    "oblique": Oblique((0.8, 0.6, 0.0), (0.0, 0.0, -1.0)),
}
SLABS = {"thin": (0.0, "mip"), "mip": (10.0, "mip"), "mean": (6.0, "mean")}
TRANSFORMS = {
    "none": (),
    "flip_h": ("flip_horizontal",),
    "rotate": ("rotate_clockwise",),
    "flip_v_rotate_3x": ("flip_vertical", "rotate_clockwise", "rotate_clockwise", "rotate_clockwise"),
}


@pytest.fixture(scope="module")
def ct_volume(demo_files):
    volume, _ = load_volume([p for p in demo_files if p.parent.name == "ct"])
    return volume


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("slab", sorted(SLABS))
@pytest.mark.parametrize("plane", sorted(PLANES))
def test_model_pixels_equal_the_rendered_view(qtbot, ct_volume, plane, slab, transform):
    view = StackView()
    qtbot.addWidget(view)
    view.resize(300, 260)
    view.set_volume(ct_volume, plane=PLANES[plane])
    view.set_slab(*SLABS[slab])
    view.state.set_slice(view.state.slice_count // 2 + 3)  # through the left marker's sphere
    view.state.set_window(600, 100)
    for step in TRANSFORMS[transform]:
        getattr(view.state, step)()
    view.show()
    qtbot.waitExposed(view)
    item = visual_item_for(ct_volume, AIView.from_view_state(view.state))
    frame = item.frames[0]
    assert frame.shape[:2] == view.displayed().on_screen().shape[:2]
    assert len(np.unique(frame[..., 0])) > 2  # air, tissue and marker/bone: not a blank image
    model_sees_the_view(view, frame)
