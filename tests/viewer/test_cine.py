"""Cine timing from the DICOM attributes and playback driven by a fake clock."""

import pytest

from viewer.cine import CinePlayer, frame_durations_ms


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_timing_attribute_precedence():
    assert frame_durations_ms({"FrameTime": 40, "CineRate": 10}, 3) == ([40.0] * 3, "FrameTime")
    assert frame_durations_ms({"CineRate": 20}, 2) == ([50.0, 50.0], "CineRate")
    assert frame_durations_ms({"RecommendedDisplayFrameRate": 25}, 1) == (
        [40.0],
        "RecommendedDisplayFrameRate",
    )
    assert frame_durations_ms({"FrameTimeVector": [0, 30, 60]}, 3) == ([30.0, 60.0, 60.0], "FrameTimeVector")
    assert frame_durations_ms({"FrameTime": "0"}, 2)[1] == "default"


def test_player_advances_at_the_recorded_rate():
    clock = FakeClock()
    player = CinePlayer([40.0] * 60, clock)
    assert player.recorded_fps == pytest.approx(25.0)
    player.play()
    clock.now += 0.039
    assert player.tick() == 0
    clock.now += 0.002  # 41 ms in
    assert player.tick() == 1
    clock.now += 1.0  # 1.041 s -> frame 26 (frames are skipped, pace is kept)
    assert player.tick() == 26


def test_loop_once_and_bounce():
    clock = FakeClock()
    player = CinePlayer([100.0] * 5, clock)  # 0.5 s cine
    player.play()
    clock.now += 0.62
    assert player.tick() == 1  # looped
    player.set_loop("bounce")  # re-anchors at frame 1 (cine time 100 ms)
    clock.now += 0.55  # cine time 650 ms -> mirrored 349 ms -> frame 3 on the way back
    assert player.tick() == 3
    player.set_loop("once")
    player.seek(3)
    clock.now += 0.5
    assert player.tick() == 4 and not player.playing


def test_speed_pause_and_seek():
    clock = FakeClock()
    player = CinePlayer([50.0] * 100, clock)
    player.set_speed(2.0)
    player.play()
    clock.now += 0.5
    assert player.tick() == 20
    player.pause()
    clock.now += 5
    assert player.tick() == 20
    player.seek(70)
    player.play()
    clock.now += 0.06  # 120 ms of cine time at 2x
    assert player.tick() == 72
