"""Cine playback logic (no Qt): the recorded frame timing and a clock-driven player.

Timing comes from the volume's frame start times (a video stream's), else, in order: Frame Time
Vector (0018,1065) or Frame Time (0018,1063) in ms, Cine Rate (0018,0040) and Recommended Display
Frame Rate (0008,2144) in frames/s.
The player is driven by any monotonic clock in seconds, so tests use a fake clock and assert
exact frames without timing anything.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from viewer.volume import Volume

DEFAULT_FPS = 10.0
LOOP_MODES = ("loop", "once", "bounce")


def _positive_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def frame_durations_ms(metadata: Mapping[str, Any], frames: int) -> tuple[list[float], str]:
    """Display duration of each frame in ms and the attribute it came from (``DEFAULT_FPS``
    when there is none).

    ``metadata`` maps DICOM keywords to values (a pydicom Dataset works too).
    """
    vector = metadata.get("FrameTimeVector")
    if vector is not None and not isinstance(vector, (str, bytes)):
        # the first entry is the time to the first frame (0 by definition): frame i lasts vector[i+1]
        times = [float(v) for v in list(vector)[1:]]
        if len(times) == frames - 1 and all(t > 0 for t in times):
            return times + [times[-1]], "FrameTimeVector"
    frame_time = _positive_float(metadata.get("FrameTime"))
    if frame_time is not None:
        return [frame_time] * frames, "FrameTime"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        fps = _positive_float(metadata.get(keyword))
        if fps is not None:
            return [1000.0 / fps] * frames, keyword
    return [1000.0 / DEFAULT_FPS] * frames, "default"


def cine_durations_ms(volume: Volume) -> tuple[list[float], str]:
    """Per-frame durations (ms) of a multi-frame volume and where they came from: its frame start
    times (``Volume.frame_start_times_ms``, e.g. a video stream's), else its DICOM timing attributes."""
    n = volume.voxels.shape[0]
    starts = volume.frame_start_times_ms
    if starts is not None and len(starts) == n and n > 1:
        durations = np.diff(np.asarray(starts, dtype=np.float64))
        if np.all(durations > 0):
            return [*durations.tolist(), float(durations[-1])], "frame times"
    return frame_durations_ms(volume.metadata, n)


def cine_start_times_ms(volume: Volume) -> list[float] | None:
    """Start time (ms from the first frame) of every frame of a multi-frame volume as recorded
    (its frame times, else its DICOM timing attributes); None when the recording has none: a
    timing is never invented for the model (the player alone falls back to ``DEFAULT_FPS``)."""
    durations, source = cine_durations_ms(volume)
    if source == "default":
        return None
    starts = volume.frame_start_times_ms
    if starts is not None and len(starts) == volume.voxels.shape[0]:
        return [float(t) for t in starts]
    return np.concatenate([[0.0], np.cumsum(durations[:-1])]).tolist()


class CinePlayer:
    """Which frame to show at a given clock time.

    ``speed`` multiplies the recorded rate. ``loop`` is "loop" (wrap around), "once" (stop at the
    last frame) or "bounce" (play back and forth). Frames are never shown early; when the display
    falls behind, frames are skipped so playback keeps the recorded pace.
    """

    def __init__(self, frame_durations_ms: Sequence[float], clock: Callable[[], float]) -> None:
        if not frame_durations_ms:
            raise ValueError("a cine needs at least one frame")
        self._durations = [float(d) for d in frame_durations_ms]
        self._starts = np.concatenate([[0.0], np.cumsum(self._durations)]).tolist()  # ms
        self._clock = clock
        self.frame = 0
        self.playing = False
        self.speed = 1.0
        self.loop = "loop"
        self._anchor_time = 0.0  # clock time (s) at which _anchor_ms of cine time was shown
        self._anchor_ms = 0.0

    @property
    def frame_count(self) -> int:
        return len(self._durations)

    @property
    def frame_durations_ms(self) -> list[float]:
        return list(self._durations)

    @property
    def recorded_fps(self) -> float:
        return 1000.0 * self.frame_count / self._starts[-1]

    def play(self) -> None:
        if not self.playing:
            if self.loop == "once" and self.frame == self.frame_count - 1:
                self.frame = 0
            self.playing = True
            self._reanchor()

    def pause(self) -> None:
        self.playing = False

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self._reanchor()

    def set_loop(self, mode: str) -> None:
        if mode not in LOOP_MODES:
            raise ValueError(f"loop mode must be one of {LOOP_MODES}")
        self.loop = mode
        self._reanchor()

    def seek(self, frame: int) -> None:
        """Scrubber: jump to a frame (playback continues from there)."""
        self.frame = int(min(max(frame, 0), self.frame_count - 1))
        self._reanchor()

    def _reanchor(self) -> None:
        self._anchor_time = self._clock()
        self._anchor_ms = self._starts[self.frame]

    def tick(self) -> int:
        """Advance to the frame due now; returns the current frame."""
        if not self.playing:
            return self.frame
        total = self._starts[-1]
        t = self._anchor_ms + (self._clock() - self._anchor_time) * 1000.0 * self.speed
        if self.loop == "loop":
            t %= total
        elif self.loop == "bounce":
            t %= 2 * total
            if t >= total:  # way back: mirror the cine time
                t = 2 * total - t - 1e-9
        elif t >= total:
            self.frame = self.frame_count - 1
            self.playing = False
            return self.frame
        self.frame = min(bisect.bisect_right(self._starts, t) - 1, self.frame_count - 1)
        return self.frame

    def describe(self) -> dict[str, object]:
        return {
            "frame": self.frame,
            "frame_count": self.frame_count,
            "playing": self.playing,
            "speed": self.speed,
            "loop": self.loop,
            "recorded_fps": round(self.recorded_fps, 3),
        }
