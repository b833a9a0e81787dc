"""Keyboard shortcuts, declared as data (napari-style) close to RadiAnt/Horos conventions.

The main window binds each :class:`Shortcut` to a handler by ``action``; the help dialog lists the
same table, so the keys shown are always the keys bound.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    action: str
    keys: tuple[str, ...]  # QKeySequence strings
    description: str
    group: str


# W/L presets on number keys (RadiAnt: 1..9 presets, 0 = default window).
WL_PRESET_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9")

SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("next_slice", ("Down", "PgDown"), "Next slice / frame", "Navigation"),
    Shortcut("previous_slice", ("Up", "PgUp"), "Previous slice / frame", "Navigation"),
    Shortcut("first_slice", ("Home",), "First slice", "Navigation"),
    Shortcut("last_slice", ("End",), "Last slice", "Navigation"),
    Shortcut("next_series", ("Right",), "Next series in the active viewport", "Navigation"),
    Shortcut("previous_series", ("Left",), "Previous series in the active viewport", "Navigation"),
    Shortcut("default_window", ("0",), "Default window/level", "Window/level"),
    *(
        Shortcut(f"wl_preset_{k}", (k,), f"Window preset {k} (see the W/L menu)", "Window/level")
        for k in WL_PRESET_KEYS
    ),
    Shortcut("invert", ("I",), "Invert grey scale", "Window/level"),
    Shortcut("zoom_in", ("+", "="), "Zoom in", "View"),
    Shortcut("zoom_out", ("-",), "Zoom out", "View"),
    Shortcut("reset_view", ("Esc",), "Reset zoom, pan, rotation and window", "View"),
    Shortcut("flip_h", ("H",), "Flip horizontally", "View"),
    Shortcut("flip_v", ("V",), "Flip vertically", "View"),
    Shortcut("rotate", ("R",), "Rotate 90 degrees clockwise", "View"),
    Shortcut("cine_play", ("Space",), "Play / pause cine", "Cine"),
    Shortcut("layout_1x1", ("Ctrl+1",), "Layout 1x1", "Layout"),
    Shortcut("layout_1x2", ("Ctrl+2",), "Layout 1x2", "Layout"),
    Shortcut("layout_2x2", ("Ctrl+4",), "Layout 2x2", "Layout"),
    Shortcut("layout_mpr_3d", ("Ctrl+3",), "Layout MPR + 3D", "Layout"),
    Shortcut("next_viewport", ("Tab",), "Activate the next viewport", "Layout"),
    Shortcut("show_browser", ("Ctrl+B",), "Study browser", "Application"),
    Shortcut("import_files", ("Ctrl+O",), "Import files, folders or zip", "Application"),
    Shortcut("settings", ("Ctrl+,",), "Settings", "Application"),
    Shortcut("help", ("F1",), "This list of shortcuts", "Application"),
)


def by_action() -> dict[str, Shortcut]:
    return {s.action: s for s in SHORTCUTS}


def conflicts() -> dict[str, list[str]]:
    """Keys bound to more than one action (the table must have none)."""
    seen: dict[str, list[str]] = {}
    for s in SHORTCUTS:
        for k in s.keys:
            seen.setdefault(k.lower(), []).append(s.action)
    return {k: v for k, v in seen.items() if len(v) > 1}


def help_html() -> str:
    """The shortcut table as HTML for the help dialog."""
    rows, group = [], None
    for s in SHORTCUTS:
        if s.group != group:
            group = s.group
            rows.append(f"<tr><th colspan=2 align=left><br>{group}</th></tr>")
        keys = " / ".join(f"<b>{k}</b>" for k in s.keys)
        rows.append(f"<tr><td>{keys}&nbsp;&nbsp;</td><td>{s.description}</td></tr>")
    rows.append(
        "<tr><th colspan=2 align=left><br>Mouse</th></tr>"
        "<tr><td><b>Wheel</b></td><td>Scroll slices</td></tr>"
        "<tr><td><b>Left drag</b></td><td>Active tool (W/L by default)</td></tr>"
        "<tr><td><b>Right drag</b></td><td>Zoom</td></tr>"
        "<tr><td><b>Middle drag</b></td><td>Pan</td></tr>"
    )
    return "<table>" + "".join(rows) + "</table>"
