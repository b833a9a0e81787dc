"""The reading model without a window: viewports, their states, activation, maximise, layouts."""

from __future__ import annotations

from app.reading.layouts import Layout, ViewKind
from app.reading.session import ReadingSession


def open_ct(archive, preferred=None) -> ReadingSession:
    uid = next(s.study_uid for s in archive.studies())
    return ReadingSession(archive, uid, preferred)


def test_a_viewport_keeps_its_state_across_layouts_and_a_new_kind_starts_afresh(demo_archive):
    session = open_ct(demo_archive)
    assert session.layout is Layout.ONE and [m.kind for m in session.viewports] == [ViewKind.STACK]
    stack = session.viewports[0]
    stack.stack.set_slice_count(40)
    stack.stack.set_slice(7)
    stack.set_slab(10.0, "mip")
    session.set_layout(Layout.TWO_BY_TWO)
    assert session.viewports[0] is stack and stack.stack.slice_index == 7 and stack.stack.slab_mm == 10.0
    session.set_layout(Layout.MPR_3D)
    mpr, volume = session.viewports
    assert (mpr.kind, volume.kind) == (ViewKind.MPR, ViewKind.VOLUME) and mpr is not stack
    assert mpr.active_state() is mpr.planes["axial"] and volume.active_state() is None
    assert session.preferred_layouts == {"CT": Layout.MPR_3D}
    assert open_ct(demo_archive, session.preferred_layouts).layout is Layout.MPR_3D


def test_activation_focus_and_maximise_emit_without_rebuilding(demo_archive):
    session = open_ct(demo_archive, {"CT": Layout.MPR_3D})
    events = []
    session.listeners.append(events.append)
    session.activate(0, "coronal")
    assert session.active_viewport().active_state() is session.viewports[0].planes["coronal"]
    session.activate(1)
    session.activate(1)  # no change, no event
    session.toggle_maximised(0)
    assert session.maximised == 0 and session.active == 0
    session.toggle_maximised(0)
    assert session.maximised is None
    assert events == ["active", "active", "active", "maximised", "maximised"]


def test_stacks_on_one_frame_of_reference_scroll_together(demo_archive):
    session = open_ct(demo_archive)
    ct_uid = session.viewports[0].series_uid
    session.set_layout(Layout.ONE_BY_TWO)
    session.assign(1, ct_uid)
    volume = session.load(ct_uid)
    for model in session.viewports:  # as the stack views set them up
        model.stack.source, model.stack.slice_count = volume, volume.voxels.shape[0]
    a, b = (m.stack for m in session.viewports)
    a.set_slice(5)
    assert b.slice_index == 5
    b.scroll(3)
    assert a.slice_index == 8


def test_a_cine_without_frame_timing_is_offered_as_a_cine_with_unknown_timing(tmp_path):
    from app.assistant.chat import ScreenContext, default_scope, offered_scopes, summarise
    from dicom_net.synthetic import ultrasound_cine, write_datasets
    from viewer.loader import load_volume

    cine = ultrasound_cine(frames=40, rows=32, columns=40, frame_time_ms=40.0)
    for keyword in ("FrameTime", "FrameIncrementPointer", "CineRate", "RecommendedDisplayFrameRate"):
        delattr(cine, keyword)
    volume, _ = load_volume(write_datasets([cine], tmp_path))
    shown = ScreenContext("1.2.3", "1.2.3.4", volume, shows="cine", slice_index=7, frame_index=7)
    assert offered_scopes(shown) == ("cine", "image")  # the cine first, never "series as volume"
    scope = default_scope(shown)
    assert scope.kind == "cine" and "cine 32 frames (timing unknown)" in summarise(volume, scope).chips()
