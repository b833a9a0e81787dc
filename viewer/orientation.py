"""Patient-orientation labels (L/R, A/P, H/F) for any direction in LPS space.

A plane image's right edge is labelled with the direction of increasing column (its row
vector), the bottom edge with the direction of increasing row; left and top get the opposites.
Oblique directions get up to three letters, the strongest component first (e.g. ``"LA"``),
as DICOM viewers do; components below ``min_component`` are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Letter for the positive and negative sense of each LPS axis.
_POSITIVE = ("L", "P", "H")
_NEGATIVE = ("R", "A", "F")


def direction_label(vector: Sequence[float], *, min_component: float = 0.25) -> str:
    """Orientation letters of a direction in LPS, e.g. (1, 0, 0) -> "L", (0, 0.6, -0.8) -> "FP"."""
    v = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(v)
    if norm == 0:
        raise ValueError("direction_label needs a non-zero vector")
    v = v / norm
    order = np.argsort(-np.abs(v), kind="stable")
    letters = []
    for axis in order:
        if abs(v[axis]) < min_component and letters:
            break
        letters.append(_POSITIVE[axis] if v[axis] > 0 else _NEGATIVE[axis])
    return "".join(letters)


def edge_labels(row_dir: Sequence[float], col_dir: Sequence[float]) -> dict[str, str]:
    """Labels of the four edges of an image whose columns run along ``row_dir`` and rows along
    ``col_dir`` (both LPS): keys ``left``, ``right``, ``top``, ``bottom``."""
    r = np.asarray(row_dir, dtype=np.float64)
    c = np.asarray(col_dir, dtype=np.float64)
    return {
        "left": direction_label(-r),
        "right": direction_label(r),
        "top": direction_label(-c),
        "bottom": direction_label(c),
    }
