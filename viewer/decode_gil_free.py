"""Greyscale JPEG Lossless and JPEG 2000 decoded by imagecodecs, which releases the GIL.

pydicom's plug-ins for these syntaxes (GDCM, pylibjpeg) hold the GIL, so a 255-slice JPEG Lossless
CT decoded in threads used one core. imagecodecs (libjpeg-turbo 3 for lossless JPEG, OpenJPEG for
JPEG 2000) decodes without it, ~3x faster than GDCM for lossless JPEG, so the loader's thread pool
decodes on every core with no second parse of the file: the encapsulated Pixel Data is read from
the offset the header scan found (or taken from the header when small enough to be read with it).

Only the plain case is taken: one sample per pixel, 8 or 16 bits allocated, a codestream of the
size and sample type the header declares. Signed data follow Pixel Representation and Bits
Stored exactly as pydicom's plug-ins give them; anything else raises :class:`GilFreeUnsuitable`
and the caller uses pydicom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1

from viewer.decode import PixelLayout

try:
    import imagecodecs
except ImportError:  # optional: without it the pydicom path (and worker processes) decode
    imagecodecs = None

_CODECS = {
    str(JPEGLossless): "jpeg8",
    str(JPEGLosslessSV1): "jpeg8",
    str(JPEG2000Lossless): "jpeg2k",
    str(JPEG2000): "jpeg2k",
}


class GilFreeUnsuitable(ValueError):
    """This image is not one the GIL-free path takes; decode it with pydicom."""


def gil_free_decodable(layout: PixelLayout) -> bool:
    """Whether :func:`decode_frames` can take an instance of this layout."""
    return (
        imagecodecs is not None
        and layout.transfer_syntax in _CODECS
        and layout.samples == 1
        and layout.bits_allocated in (8, 16)
        and layout.photometric in ("MONOCHROME1", "MONOCHROME2")
    )


def decode_frames(
    path: str | Path, layout: PixelLayout, frames: list[int], header: Dataset | None = None
) -> list[np.ndarray]:
    """Stored values of ``frames`` (rows, columns), as pydicom would give them (``header``: the
    header scan's data set, which may hold the Pixel Data already)."""
    if not gil_free_decodable(layout):
        raise GilFreeUnsuitable("not a greyscale JPEG Lossless / JPEG 2000 image")
    raw = header.get_item(0x7FE00010, keep_deferred=True) if header is not None else None
    if raw is not None and isinstance(raw.value, bytes):
        encapsulated = raw.value
    elif layout.pixel_offset is not None:
        with open(path, "rb") as fh:
            fh.seek(layout.pixel_offset)
            encapsulated = fh.read()
    else:
        raise GilFreeUnsuitable("Pixel Data neither read nor located")
    try:
        codestreams = list(generate_frames(encapsulated, number_of_frames=layout.frames))
    except (ValueError, KeyError) as exc:
        raise GilFreeUnsuitable(f"encapsulated pixel data not split into frames: {exc}") from exc
    if len(codestreams) != layout.frames:
        raise GilFreeUnsuitable(f"{len(codestreams)} codestreams for {layout.frames} frames")
    decode = getattr(imagecodecs, f"{_CODECS[layout.transfer_syntax]}_decode")
    out = []
    for f in frames:
        try:
            arr = decode(codestreams[f])
        except Exception as exc:  # noqa: BLE001 - imagecodecs raises its own error types
            raise GilFreeUnsuitable(f"imagecodecs: {exc}") from exc
        out.append(_as_stored(arr, layout))
    return out


def _as_stored(arr: np.ndarray, layout: PixelLayout) -> np.ndarray:
    """The decoded samples with the header's size, width and sign (pydicom's reading of them)."""
    if arr.shape != (layout.rows, layout.columns) or arr.dtype.itemsize != layout.bits_allocated // 8:
        raise GilFreeUnsuitable(f"codestream holds {arr.shape} {arr.dtype}, header declares otherwise")
    if arr.dtype.kind == "i" and not layout.signed:
        raise GilFreeUnsuitable("signed codestream in an unsigned image")
    if not layout.signed:
        return arr
    signed = arr.view(np.dtype(f"<i{layout.bits_allocated // 8}"))
    shift = layout.bits_allocated - layout.bits_stored
    if shift and arr.dtype.kind == "u":  # a Bits Stored-wide two's complement pattern: sign-extend
        return (signed << shift) >> shift
    return signed
