"""The one key map of the workstation, declared as data (napari-style), RadiAnt/Horos conventions.

A 2D view's own keys (scroll, flip, invert, delete a measurement...) are declared once, in
``viewer.view_state.VIEW_BINDINGS`` (the viewer's widgets read them too); this table adds the
workstation's keys (presets, cine, layouts, application). The main window binds each
:class:`Shortcut` to a handler by ``action``; the help dialog is generated from the same tables,
so the keys shown are always the keys bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.view_state import MOUSE_BINDINGS, VIEW_BINDINGS


@dataclass(frozen=True)
class Shortcut:
    action: str
    keys: tuple[str, ...]  # QKeySequence strings
    description: str
    group: str


# W/L presets on number keys (RadiAnt: 1..9 presets, 0 = default window).
WL_PRESET_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9")

VIEW_SHORTCUTS: tuple[Shortcut, ...] = tuple(
    Shortcut(b.action, b.keys, b.description, b.group) for b in VIEW_BINDINGS
)  # handled by the active viewport's view state

SHORTCUTS: tuple[Shortcut, ...] = (
    *VIEW_SHORTCUTS,
    Shortcut("next_series", ("Right",), "Next series in the active viewport", "Navigation"),
    Shortcut("previous_series", ("Left",), "Previous series in the active viewport", "Navigation"),
    Shortcut("default_window", ("0",), "Default window/level", "Window/level"),
    *(
        Shortcut(f"wl_preset_{k}", (k,), f"Window preset {k} (see the W/L menu)", "Window/level")
        for k in WL_PRESET_KEYS
    ),
    Shortcut("cine_play", ("Space",), "Play / pause cine", "Cine"),
    Shortcut("layout_1x1", ("Ctrl+1",), "Layout 1x1", "Layout"),
    Shortcut("layout_1x2", ("Ctrl+2",), "Layout 1x2", "Layout"),
    Shortcut("layout_2x2", ("Ctrl+4",), "Layout 2x2", "Layout"),
    Shortcut("layout_mpr_3d", ("Ctrl+3",), "Layout MPR + 3D", "Layout"),
    Shortcut("toggle_mpr", ("M",), "MPR + 3D of the shown series / back to 1x1", "Layout"),
    Shortcut("next_viewport", ("Tab",), "Activate the next viewport", "Layout"),
    Shortcut("show_browser", ("Ctrl+B",), "Study browser", "Application"),
    Shortcut("import_files", ("Ctrl+O",), "Import files, folders or zip", "Application"),
    Shortcut("settings", ("Ctrl+,",), "Settings", "Application"),
    Shortcut("help", ("F1",), "This list of shortcuts", "Application"),
)


GROUPS = ("Navigation", "Window/level", "View", "Measurements", "Cine", "Layout", "Application")


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
    """The key and mouse tables as HTML for the help dialog."""
    rows, group = [], None
    for s in sorted(SHORTCUTS, key=lambda s: GROUPS.index(s.group)):
        if s.group != group:
            group = s.group
            rows.append(f"<tr><th colspan=2 align=left><br>{group}</th></tr>")
        keys = " / ".join(f"<b>{k}</b>" for k in s.keys)
        rows.append(f"<tr><td>{keys}&nbsp;&nbsp;</td><td>{s.description}</td></tr>")
    rows.append("<tr><th colspan=2 align=left><br>Mouse</th></tr>")
    rows.extend(f"<tr><td><b>{what}</b></td><td>{does}</td></tr>" for what, does in MOUSE_BINDINGS)
    return "<table>" + "".join(rows) + "</table>"
