"""Series thumbnails: middle image, stored window applied, block-averaged, cached."""

from __future__ import annotations

import numpy as np
import pydicom

from app.reading.thumbnails import ThumbnailCache, render_thumbnail
from dicom_net.synthetic import demo_study
from viewer.reslice import window_to_uint8


def test_thumbnail_grey_is_the_viewers_grey(tmp_path):
    """A value where the old thumbnail formula (c - w/2, /w) and the viewer's DICOM window
    (c - 0.5 - (w-1)/2, /(w-1)) round differently: -142 HU in 40/400 is 12 on screen, not 11."""
    demo = demo_study(tmp_path / "d", ct_slices=3, ct_matrix=64)
    path = sorted(p for p in demo.files if p.parent.name == "ct")[1]
    ds = pydicom.dcmread(path)
    stored = round((-142 - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
    ds.PixelData = np.full(ds.pixel_array.shape, stored, dtype=ds.pixel_array.dtype).tobytes()
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.save_as(path)
    assert window_to_uint8(np.array([-142.0]), 400, 40)[0] == 12
    assert set(render_thumbnail(path, size=64).ravel().tolist()) == {12}


def test_ct_thumbnail_shows_soft_tissue_air_and_bone_at_known_places(tmp_path):
    demo = demo_study(tmp_path / "d", ct_slices=5, ct_matrix=128)
    ct = sorted(p for p in demo.files if p.parent.name == "ct")
    thumb = render_thumbnail(ct[2], size=64)  # 128 px, 2.5 mm pixels -> 64 px, 5 mm each
    assert thumb.shape == (64, 64) and thumb.dtype == np.uint8
    assert thumb[0, 0] == 0  # air at the corner, window 40/400
    assert thumb[32, 32] == 128  # soft tissue (40 HU) at the centre
    # bone ring at |x| in 134..142 mm; thumbnail column c spans x = -160 + 5c .. -155 + 5c mm
    assert thumb[32, 59] == 255 and thumb[32, 4] == 255
    # patient-left marker (x = +60 mm, 1500 HU) on the image's right half only
    assert thumb[32, 44] == 255 and thumb[32, 64 - 1 - 44] == 128


def test_cache_returns_the_same_pixels_without_reading_the_file(tmp_path):
    demo = demo_study(tmp_path / "d", ct_slices=12, ct_matrix=64)
    dx = [p for p in demo.files if p.parent.name == "dx"]
    us = [p for p in demo.files if p.parent.name == "us"]
    cache = ThumbnailCache(tmp_path / "cache", size=48)
    first = cache.get("dx-uid", dx)
    assert first is not None and max(first.shape) <= 48
    dx[0].unlink()
    np.testing.assert_array_equal(cache.get("dx-uid", dx), first)
    ct = sorted(
        (p for p in demo.files if p.parent.name == "ct"), key=lambda p: pydicom.dcmread(p).InstanceNumber
    )
    partial = cache.get("ct-uid", ct[:1])  # a series still arriving: its first slice (z = -8.25 mm)
    complete = cache.get("ct-uid", ct)  # all 12 slices: the middle one (z = +0.75 mm), not the cached first
    # the patient-left marker (r = 8 mm around z = 0) shows in the middle slice only
    assert partial[16, 21] == 128 and complete[16, 21] == 223  # 10 mm blocks, partly marker
    colour = cache.get("us-uid", us)  # RGB cine 240 x 320: 7 x 7 blocks of the middle frame
    assert colour is not None and colour.shape == (34, 45, 3)
    assert np.all(np.abs(colour[17, 22].astype(int) - 220) <= 3)  # the disc, centred in frame 30 of 60
    assert np.all(colour[17, 2] < 40)  # dark speckle background


def test_multiframe_thumbnail_decodes_only_the_middle_frame(tmp_path):
    """A cine with a damaged first frame still gets its thumbnail: only frame n/2 is decoded."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import RLELossless

    demo = demo_study(tmp_path / "d", ct_slices=3, ct_matrix=32)
    us = next(p for p in demo.files if p.parent.name == "us")
    ds = pydicom.dcmread(us)
    expected = render_thumbnail(us, size=48)
    ds.compress(RLELossless)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData = encapsulate([b"\0" * 8, *frames[1:]])  # frame 0 cannot be decoded
    damaged = tmp_path / "damaged.dcm"
    ds.save_as(damaged)
    np.testing.assert_array_equal(render_thumbnail(damaged, size=48), expected)


def test_series_strip_lists_series_at_once_and_thumbnails_follow_from_a_worker(demo_archive, qtbot, tmp_path):
    from app.gui.study_browser import STUDY_UID_ROLE, SeriesStrip

    strip = SeriesStrip()
    qtbot.addWidget(strip)
    cache = ThumbnailCache(tmp_path / "thumbs", size=48)
    study_uid = demo_archive.studies()[0].study_uid
    strip.show_series(demo_archive, study_uid, cache)
    uids = [strip.item(i).data(STUDY_UID_ROLE) for i in range(strip.count())]
    assert len(uids) == 3  # CT, DX, US listed before any pixel is decoded
    strip.wait_thumbnails()
    qtbot.waitUntil(
        lambda: all(not strip.item(i).icon().isNull() for i in range(strip.count())), timeout=10000
    )
    for i, uid in enumerate(uids):
        paths = [r.path for r in demo_archive.instances(uid)]
        image = strip.item(i).icon().pixmap(96, 96).toImage()
        thumb = cache.cached(uid, len(paths))
        assert thumb is not None  # rendered by the worker and kept for the next time
        assert (image.width(), image.height()) == (thumb.shape[1], thumb.shape[0])
        y, x = thumb.shape[0] // 2, thumb.shape[1] // 2
        centre = image.pixelColor(x, y)
        expected = thumb[y, x] if thumb.ndim == 3 else [thumb[y, x]] * 3
        assert [centre.red(), centre.green(), centre.blue()] == [int(v) for v in expected]
