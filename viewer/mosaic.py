"""Siemens mosaic images: one stored image holding the slices of a volume as tiles (EPI, diffusion).

A mosaic is recognised by ``MOSAIC`` in Image Type with a slice count from the CSA image header
(``NumberOfImagesInMosaic``) or the private (0019,xx0A) element of "SIEMENS MR HEADER". The
tiles fill a square grid of ``ceil(sqrt(n))`` tiles a side, row by row; the unused tiles at the
end are empty.

Geometry (the method dcm2niix and nibabel document): Image Position (Patient) of a mosaic is the
corner of a virtual image of the *whole* mosaic size centred where each tile is centred, so the
first tile's corner is that position moved by half the size difference along the row and column
directions. Slice ``k`` lies ``k`` slice spacings (Spacing Between Slices, else Slice Thickness)
from the first along the CSA ``SliceNormalVector`` (which may point against row x column: the
tiles are then stored head to feet; the stack is sorted along the normal afterwards anyway).
Without a slice normal the row x column normal is used.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

CSA_CREATOR = "SIEMENS CSA HEADER"
MR_CREATOR = "SIEMENS MR HEADER"


@dataclass(frozen=True)
class Mosaic:
    """How the tiles of a mosaic are laid out."""

    count: int  # slices in the mosaic
    per_row: int  # tiles per mosaic row (and column)
    rows: int  # rows of one tile
    columns: int  # columns of one tile
    slice_normal: tuple[float, float, float] | None  # CSA SliceNormalVector

    def tile(self, image: np.ndarray, index: int) -> np.ndarray:
        """Tile ``index`` of a mosaic image (rows, cols[, samples])."""
        r, c = divmod(index, self.per_row)
        return image[r * self.rows : (r + 1) * self.rows, c * self.columns : (c + 1) * self.columns]

    def positions(
        self,
        mosaic_position: np.ndarray,
        row_dir: np.ndarray,
        col_dir: np.ndarray,
        pixel_spacing: tuple[float, float],
        slice_spacing: float,
    ) -> list[np.ndarray]:
        """Image Position (Patient) of every tile's first pixel (LPS mm)."""
        dr, dc = pixel_spacing
        shift_cols = (self.columns * self.per_row - self.columns) / 2.0
        shift_rows = (self.rows * self.per_row - self.rows) / 2.0
        first = mosaic_position + row_dir * dc * shift_cols + col_dir * dr * shift_rows
        normal = np.cross(row_dir, col_dir)
        if self.slice_normal is not None:
            candidate = np.asarray(self.slice_normal, dtype=np.float64)
            length = float(np.linalg.norm(candidate))
            if length > 1e-6 and abs(abs(float(candidate @ normal)) / length - 1.0) < 1e-3:
                normal = candidate / length
        return [first + k * slice_spacing * normal for k in range(self.count)]


def mosaic_of(ds: Dataset, rows: int, columns: int) -> Mosaic | None:
    """The mosaic layout of an image, None when it is not a (valid) Siemens mosaic."""
    value = ds.get("ImageType")
    parts = value if isinstance(value, MultiValue | list) else [value] if value else []
    if "MOSAIC" not in {str(t).strip().upper() for t in parts}:
        return None
    csa = csa_image_header(ds)
    count = _csa_int(csa.get("NumberOfImagesInMosaic")) or _mr_header_count(ds)
    if not count or count < 1:
        return None
    per_row = math.ceil(math.sqrt(count))
    if per_row < 2 or rows % per_row or columns % per_row:
        return None
    normal = csa.get("SliceNormalVector") or []
    try:
        slice_normal = tuple(float(v) for v in normal[:3]) if len(normal) >= 3 else None
    except ValueError:
        slice_normal = None
    return Mosaic(count, per_row, rows // per_row, columns // per_row, slice_normal)  # type: ignore[arg-type]


def _csa_int(values: list[str] | None) -> int | None:
    try:
        return int(float(values[0])) if values else None
    except ValueError:
        return None


def _mr_header_count(ds: Dataset) -> int | None:
    try:
        block = ds.private_block(0x0019, MR_CREATOR)
        value = block[0x0A].value
    except (KeyError, ValueError):
        return None
    if isinstance(value, bytes):
        return int.from_bytes(value[:2], "little") if len(value) >= 2 else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def csa_image_header(ds: Dataset) -> dict[str, list[str]]:
    """Fields of the Siemens CSA image header (0029,xx10) as text values ({} when absent or not
    in the "SV10" layout)."""
    try:
        raw = ds.private_block(0x0029, CSA_CREATOR)[0x10].value
    except (KeyError, ValueError):
        return {}
    if not isinstance(raw, bytes):
        return {}
    try:
        return parse_csa2(raw)
    except (struct.error, ValueError, UnicodeDecodeError):
        return {}


def parse_csa2(raw: bytes) -> dict[str, list[str]]:
    """Parse a CSA2 ("SV10") header: name -> the non-empty text of its items."""
    if raw[:4] != b"SV10":
        raise ValueError("not a CSA2 header")
    (n_tags,) = struct.unpack_from("<I", raw, 8)
    if n_tags > 1000:
        raise ValueError("implausible CSA tag count")
    pos = 16
    out: dict[str, list[str]] = {}
    for _ in range(n_tags):
        name = raw[pos : pos + 64].split(b"\0", 1)[0].decode("ascii")
        (n_items,) = struct.unpack_from("<i", raw, pos + 76)
        pos += 84
        if not 0 <= n_items <= 10000:
            raise ValueError("implausible CSA item count")
        values = []
        for _ in range(n_items):
            length = struct.unpack_from("<4i", raw, pos)[1]
            pos += 16
            if length < 0 or pos + length > len(raw):
                raise ValueError("CSA item runs past the header")
            text = raw[pos : pos + length].split(b"\0", 1)[0].decode("latin-1").strip()
            if text:
                values.append(text)
            pos += (length + 3) // 4 * 4
        out[name] = values
    return out
