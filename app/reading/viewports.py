"""What each viewport of the reading grid shows, in plain Python (no Qt): the reading model.

A :class:`ViewportModel` holds the view states of one viewport (``viewer.view_state``): one
``ViewState`` for a stack or cine, three plus a shared ``Crosshair`` for MPR, a ``VolumeState``
for 3D. The Qt views are built around these objects and only observe them, so a rebuilt grid
(layout change, drop) shows each viewport as the reader left it, and what is on screen can be
read without a widget (``viewer.view_state.displayed_image``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.reading.layouts import ViewKind
from viewer.view_state import VOLUME_PRESETS, Crosshair, ViewState, VolumeState

MPR_PLANES = ("axial", "coronal", "sagittal")


@dataclass
class ViewportModel:
    """One viewport: its series, its kind of view and the states that view observes.

    ``focus`` is the MPR plane that keys, presets, the slab box and the AI act on (the pane last
    clicked)."""

    series_uid: str | None
    kind: ViewKind
    stack: ViewState = field(default_factory=ViewState)
    planes: dict[str, ViewState] = field(default_factory=lambda: {name: ViewState() for name in MPR_PLANES})
    crosshair: Crosshair = field(default_factory=Crosshair)
    volume: VolumeState = field(default_factory=lambda: VolumeState(VOLUME_PRESETS))
    focus: str = "axial"

    def active_state(self) -> ViewState | None:
        """The 2D state keys act on: the focused MPR plane, the stack or cine; None for 3D."""
        if self.kind is ViewKind.MPR:
            return self.planes[self.focus]
        if self.kind is ViewKind.VOLUME:
            return None
        return self.stack

    def view_states(self) -> list[ViewState]:
        """Every 2D state of this viewport (three for MPR)."""
        if self.kind is ViewKind.MPR:
            return list(self.planes.values())
        return [] if self.kind is ViewKind.VOLUME else [self.stack]

    def set_slab(self, thickness_mm: float, mode: str = "mip") -> None:
        """The viewport's slab: all three MPR planes, or the stack (not a cine or 3D)."""
        if self.kind in (ViewKind.MPR, ViewKind.STACK):
            for state in self.view_states():
                state.set_slab(thickness_mm, mode)  # type: ignore[arg-type]

    def clear_measurements(self) -> None:
        for state in self.view_states():
            state.clear_measurements()
