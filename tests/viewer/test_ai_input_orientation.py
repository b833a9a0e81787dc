"""The AI's 3D input is anatomically oriented whatever the patient position of the acquisition.

Runs the whole path the app uses (files -> ``viewer.loader`` -> ``viewer.reslice`` ->
``app.assistant.ai_inputs.visual_item_for`` -> RGB frames) on phantoms whose markers sit at known LPS
positions, and checks every sampled frame against pixel positions computed here from the phantom
geometry alone: axial frames have anterior up and the patient's left on the image's right, and
the frames run from the feet to the head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.assistant.ai_inputs import AIView, visual_item_for
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_series

ORIENTATIONS = {
    "HFS": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "HFP": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    "FFS": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "FFP": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
}
WHITE, MID_GREY = 255, 128  # markers (>= 1000 HU) and soft tissue (40 HU) in a 400/40 window


@pytest.mark.parametrize("position", sorted(ORIENTATIONS))
def test_3d_input_is_feet_to_head_anterior_up_left_on_right(tmp_path: Path, position: str) -> None:
    geometry = SeriesGeometry(
        rows=64,
        columns=80,
        pixel_spacing=(4.0, 4.0),
        orientation=ORIENTATIONS[position],
        slices=40,
        slice_step=2.5,
    )
    volume = load_series(write_datasets(ct_series(geometry), tmp_path)).volumes[0]
    item = visual_item_for(volume, AIView(mode="3d", plane="axial", slices=40, window=400, level=40))
    frames = item.frames[..., 0]
    assert item.kind == "volume" and frames.shape == (40, 64, 80)

    # expected layout from the phantom alone: columns run to the patient's left (+x), rows to
    # posterior (+y), frames to the head (+z), each starting at the smallest pixel-centre coordinate
    centres = np.concatenate([geometry.pixel_lps(p).reshape(-1, 3) for p in geometry.slice_positions()])
    x0, y0, z0 = centres.min(axis=0)

    def pixel(x: float, y: float) -> tuple[int, int]:
        return round((y - y0) / 4.0), round((x - x0) / 4.0)

    def frame(z: float) -> int:
        return round((z - z0) / 2.5)

    mid = frame(0.0)
    left, right = pixel(60.0, 0.0), pixel(-60.0, 0.0)  # 1500 HU marker on the patient's left only
    assert frames[mid][left] == WHITE and frames[mid][right] == MID_GREY
    anterior, posterior = pixel(0.0, -50.0), pixel(0.0, 50.0)  # 1200 HU marker anterior only
    assert frames[mid][anterior] == WHITE and frames[mid][posterior] == MID_GREY
    assert anterior[0] < posterior[0] and right[1] < left[1]
    centre = pixel(0.0, 0.0)
    head, feet = frame(40.0), frame(-40.0)  # 1000 HU marker 40 mm towards the head only
    assert frames[head][centre] == WHITE and frames[feet][centre] == MID_GREY
    assert feet < mid < head
