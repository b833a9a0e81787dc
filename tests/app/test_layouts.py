"""Hanging protocol and layout logic, without widgets."""

from __future__ import annotations

from app.reading.layouts import Layout, SeriesInfo, ViewKind, default_hanging, link_groups, relayout

CT = SeriesInfo("ct", "CT", 120, frame_of_reference="for1")
CT2 = SeriesInfo("ct2", "CT", 60, frame_of_reference="for1")
DX = SeriesInfo("dx", "DX", 1)
US = SeriesInfo("us", "US", 1, frames=30)


def test_ct_hangs_as_a_1x1_stack_unless_the_reader_chose_another_layout_for_ct():
    h = default_hanging([DX, US, CT])
    assert h.layout is Layout.ONE and h.slots == (("ct", ViewKind.STACK),)
    h = default_hanging([DX, US, CT], preferred={"CT": Layout.MPR_3D, "DX": Layout.TWO_BY_TWO})
    assert h.layout is Layout.MPR_3D
    assert h.slots == (("ct", ViewKind.MPR), ("ct", ViewKind.VOLUME))


def test_radiograph_hangs_1x1_and_ultrasound_as_cine():
    assert default_hanging([DX]).slots == (("dx", ViewKind.STACK),)
    assert default_hanging([DX]).layout is Layout.ONE
    assert default_hanging([US]).slots == (("us", ViewKind.CINE),)


def test_relayout_keeps_shown_series_and_fills_the_rest():
    assert relayout(["dx"], Layout.TWO_BY_TWO, [CT, DX, US, CT2]) == ["dx", "ct", "ct2", "us"]
    assert relayout(["us", "ct"], Layout.ONE, [CT, US]) == ["us"]
    assert relayout(["us", "ct"], Layout.MPR_3D, [CT, US]) == ["us", "us"]
    assert relayout(["ct", "ct"], Layout.TWO_BY_TWO, [CT, DX, US]) == ["ct", "dx", "us", None]


def test_series_sharing_a_frame_of_reference_are_linked():
    assert link_groups([CT, DX, CT2, None]) == {"for1": [0, 2]}
    assert link_groups([CT, DX]) == {}
