"""Multi-frame playback (US, XA, endoscopy) at the recorded rate: play/pause, loop, speed, scrubber.

A ``viewer.cine.CinePlayer`` decides which frame is due; a QTimer only asks it regularly, so
playback keeps the recorded pace whatever the display manages (late frames are skipped), and
tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from viewer.cine import LOOP_MODES, CinePlayer, cine_durations_ms
from viewer.qt.slice_view import StackView
from viewer.view_state import ViewState

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)


class CineView(QWidget):
    """A ``StackView`` of the frames plus transport controls. ``clock`` returns seconds."""

    frame_changed = Signal(int)

    def __init__(
        self,
        parent: QWidget | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: ViewState | None = None,
    ) -> None:
        super().__init__(parent)
        self._clock = clock
        self.player: CinePlayer | None = None
        self.timing_source = ""
        self.display = StackView(self, state)  # the frames; ``state`` is the model it observes
        self.play_button = QPushButton("Play")
        self.loop_box = QComboBox()
        self.loop_box.addItems(list(LOOP_MODES))
        self.speed_box = QComboBox()
        self.speed_box.addItems([f"{s:g}x" for s in SPEEDS])
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.frame_label = QLabel("0/0")
        controls = QHBoxLayout()
        for widget in (self.play_button, self.scrubber, self.frame_label, self.loop_box, self.speed_box):
            controls.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.display, 1)
        layout.addLayout(controls)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.play_button.clicked.connect(self.toggle)
        self.scrubber.valueChanged.connect(self._scrubbed)
        self.loop_box.currentTextChanged.connect(lambda mode: self.player and self.player.set_loop(mode))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.display.slice_changed.connect(self._shown)

    def set_volume(self, volume: Any, metadata: dict[str, Any] | None = None) -> None:
        """Show a multi-frame ``Volume`` (frames along ``voxels`` axis 0) from its first frame."""
        durations, self.timing_source = cine_durations_ms(volume)
        self.pause()
        self.player = CinePlayer(durations, self._clock)
        self.player.set_loop(self.loop_box.currentText())
        self.player.set_speed(SPEEDS[self.speed_box.currentIndex()])
        self.display.set_volume(volume, metadata)
        self.scrubber.setRange(0, self.player.frame_count - 1)
        self._show(0)
        self._shown(0)

    @property
    def state(self) -> ViewState:
        return self.display.state

    def detach(self) -> None:
        self.pause()
        self.display.detach()

    # -- transport ------------------------------------------------------------------------
    def play(self) -> None:
        if self.player is None:
            return
        self.player.play()
        self.play_button.setText("Pause")
        shortest = min(self.player.frame_durations_ms) / self.player.speed
        self.timer.start(max(int(shortest / 2), 5))

    def pause(self) -> None:
        self.timer.stop()
        if self.player is not None:
            self.player.pause()
        self.play_button.setText("Play")

    def toggle(self) -> None:
        self.pause() if self.player is not None and self.player.playing else self.play()

    def set_speed(self, speed: float) -> None:
        if self.player is not None:
            self.player.set_speed(speed)
            if self.player.playing:
                self.play()

    def set_loop(self, mode: str) -> None:
        self.loop_box.setCurrentText(mode)

    def seek(self, frame: int) -> None:
        """Scrubber: jump to a frame (playback, if on, continues from there)."""
        if self.player is not None:
            self.player.seek(frame)
            self._show(self.player.frame)

    def tick(self) -> int:
        """Show the frame due now (the timer calls this); returns it."""
        if self.player is None:
            return 0
        frame = self.player.tick()
        self._show(frame)
        if not self.player.playing:
            self.pause()
        return frame

    def current_frame(self) -> int:
        return self.display.current_slice_index()

    def render_to_array(self, overlays: bool = True) -> np.ndarray:
        return self.display.render_to_array(overlays)

    def describe(self) -> dict[str, object]:
        info = {
            "view": "cine",
            **(self.player.describe() if self.player else {}),
            "timing_source": self.timing_source,
        }
        info["window"] = self.display.window_level()
        return info

    # -- internals ------------------------------------------------------------------------
    def _show(self, frame: int) -> None:
        self.display.set_slice(frame)  # the display's slice_changed calls _shown

    def _shown(self, frame: int) -> None:
        if self.player is not None and frame != self.player.frame and not self.player.playing:
            self.player.seek(frame)  # scrolled in the display itself
        self.scrubber.blockSignals(True)
        self.scrubber.setValue(frame)
        self.scrubber.blockSignals(False)
        total = self.player.frame_count if self.player else 0
        self.frame_label.setText(f"{frame + 1}/{total}")
        self.frame_changed.emit(frame)

    def _scrubbed(self, frame: int) -> None:
        self.seek(frame)
