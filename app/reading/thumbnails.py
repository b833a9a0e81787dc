"""Cheap series thumbnails: the middle image (or middle frame), windowed, downsampled, cached.

Reads one file with pydicom, applies the rescale and the stored window (or the 1st-99th
percentile range when none is stored) with the viewer's window function and keeps a small uint8 array; cached as ``.npy`` under
the data directory keyed by series UID, instance count and image size, so a second request costs a file read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import pixel_array

from dicom_net.paths import data_dir
from hulu_common.atomic import atomic_output
from viewer.reslice import window_to_uint8

log = logging.getLogger(__name__)

THUMB_SIZE = 96


def _first(value: object) -> float:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0]
    return float(value)


def downsample(image: np.ndarray, size: int) -> np.ndarray:
    """Block-average an image (H, W[, 3]) so its longer side is at most ``size`` pixels."""
    h, w = image.shape[:2]
    factor = max(1, int(np.ceil(max(h, w) / size)))
    if factor == 1:
        return image
    hh, ww = h // factor * factor, w // factor * factor
    blocks = image[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor, *image.shape[2:])
    return blocks.astype(np.float32).mean(axis=(1, 3)).round().astype(np.uint8)


def render_thumbnail(path: Path, size: int = THUMB_SIZE) -> np.ndarray:
    """A uint8 grey (H, W) or RGB (H, W, 3) thumbnail of one DICOM file's middle frame."""
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    # decode the middle frame only: a long cine or enhanced multi-frame is not decoded whole
    pixels = pixel_array(ds, index=frames // 2) if frames > 1 else ds.pixel_array
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # colour (pydicom converts YBR to RGB)
        return downsample(pixels.astype(np.uint8), size)
    values = pixels.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    else:
        lo, hi = np.percentile(values, (1, 99))
        center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    monochrome1 = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    return downsample(window_to_uint8(values, width, center, invert=monochrome1), size)


class ThumbnailCache:
    """Thumbnails of series by UID, computed once and kept as ``.npy`` files."""

    def __init__(self, folder: Path | None = None, size: int = THUMB_SIZE):
        self.folder = Path(folder) if folder else data_dir() / "thumbnails"
        self.size = size

    def _path(self, series_uid: str, count: int) -> Path:
        return self.folder / f"{series_uid}-{count}-{self.size}.npy"

    def cached(self, series_uid: str, count: int) -> np.ndarray | None:
        """The cached thumbnail if there is one (a file read, no decoding), else None."""
        path = self._path(series_uid, count)
        if not path.exists():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def get(self, series_uid: str, instance_paths: Sequence[Path]) -> np.ndarray | None:
        """The series thumbnail (middle instance), or None if no instance can be decoded.

        Cached per instance count, so a series still arriving gets a new middle image later.
        """
        hit = self.cached(series_uid, len(instance_paths))
        if hit is not None:
            return hit
        cached = self._path(series_uid, len(instance_paths))
        if not instance_paths:
            return None
        try:
            image = render_thumbnail(Path(instance_paths[len(instance_paths) // 2]), self.size)
        except Exception as exc:  # noqa: BLE001 - undecodable pixel data: the browser shows a text tile
            log.warning("no thumbnail for series %s: %s", series_uid, type(exc).__name__)
            return None
        with atomic_output(cached) as tmp, open(tmp, "wb") as fh:
            np.save(fh, image)
        return image
