"""The in-memory image data every view and the AI input are made from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    """A regular 3D grid of modality values (HU for CT) in LPS patient space.

    ``voxels`` is indexed ``[k, j, i]`` (slice, row, column). Voxel ``(i, j, k)`` sits at
    ``origin + direction @ (i * spacing[0], j * spacing[1], k * spacing[2])`` where the columns of
    ``direction`` are the unit vectors of increasing column, row and slice index. Colour data
    (ultrasound) adds a trailing channel axis. Values are kept in the smallest dtype that holds
    them exactly (int16 for most CT) rather than float, to stay within a memory budget.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    frame_start_times_ms: list[float] | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        k, j, i = self.voxels.shape[:3]
        return i, j, k

    @property
    def is_color(self) -> bool:
        return self.voxels.ndim == 4

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """LPS coordinates (..., 3) of continuous voxel indices (..., 3) given as (i, j, k)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ np.asarray(self.direction).T

    def lps_to_index(self, lps: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (i, j, k) of LPS points (..., 3)."""
        lps = np.asarray(lps, dtype=np.float64) - np.asarray(self.origin)
        return (lps @ np.linalg.inv(np.asarray(self.direction)).T) / np.asarray(self.spacing)
