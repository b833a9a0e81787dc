"""Window/level presets: the modality's standard ones plus the file's own Window Center/Width.

Presets live in ``resources/presets/wl_presets.json`` as ``{modality: [{name, window, level}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRESETS_FILE = Path(__file__).resolve().parents[1] / "resources" / "presets" / "wl_presets.json"


@dataclass(frozen=True)
class WindowPreset:
    name: str
    window: float
    level: float


@lru_cache(maxsize=1)
def _load_presets() -> dict[str, tuple[WindowPreset, ...]]:
    raw = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    return {
        modality.upper(): tuple(WindowPreset(p["name"], float(p["window"]), float(p["level"])) for p in items)
        for modality, items in raw.items()
    }


def modality_presets(modality: str | None) -> tuple[WindowPreset, ...]:
    """Standard presets for a modality (empty when there are none, e.g. US)."""
    return _load_presets().get((modality or "").upper(), ())


def presets_for(metadata: dict[str, object]) -> list[WindowPreset]:
    """Presets for a loaded volume: the file's own windows first, then the modality's standard ones.

    ``metadata`` is ``Volume.metadata`` as filled by :mod:`viewer.loader` (keys ``modality`` and
    ``file_windows``: a list of ``(window, level, explanation)``).
    """
    own = [
        WindowPreset(explanation or f"File {i + 1}", float(w), float(c))
        for i, (w, c, explanation) in enumerate(metadata.get("file_windows", []) or [])  # type: ignore[arg-type]
        if float(w) > 0
    ]
    return own + list(modality_presets(str(metadata.get("modality") or "")))


def default_window(metadata: dict[str, object], value_range: tuple[float, float]) -> WindowPreset:
    """The window to open a volume with: the file's first window, else the full value range.

    The loader takes ``file_windows`` from the middle slice, the one the views open on (Siemens MR
    stores a window per slice, and the first slice's can be W 8 / L 4 on noise); the AI input
    uses this same window unless the user changed it on screen."""
    presets = presets_for(metadata)
    if presets and metadata.get("file_windows"):
        return presets[0]
    lo, hi = value_range
    return WindowPreset("Full range", max(float(hi - lo), 1.0), float(lo + hi) / 2.0)
