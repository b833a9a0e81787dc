"""Pixel decoding: stored pixels -> modality values (HU for CT), one frame or many at a time.

Two paths:

* **native fast path** for uncompressed little-endian greyscale/RGB data: the frame's bytes are
  read straight from the file offset found by the header scan (no second parse) and rescaled
  into the caller's output array with numpy (which releases the GIL, so a thread pool scales);
* **pydicom path** for everything else: every compressed transfer syntax pydicom decodes with
  pylibjpeg / openjpeg / gdcm / pyjpegls (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000,
  HTJ2K, RLE, deflate), big endian, YBR colour (YBR_FULL/422 converted to RGB here, with
  pydicom's rounding; JPEG 2000 RCT/ICT by the codec) and palette colour (expanded to 8-bit RGB).
  12-bit lossy JPEG (Process 2/4) is decoded by GDCM directly, which gives DCMTK's values
  (pydicom's GDCM plug-in refuses 12-bit precision; pylibjpeg's IDCT differs by a few units).

Colour deeper than 8 bits (16/32-bit RGB) keeps the top 8 bits of Bits Stored per channel, as
palette entries do: colour is displayed and sent to the AI as 8-bit RGB. 1-bit images become 0/1.

The modality transform is Rescale Slope/Intercept (classic or Enhanced per-frame Pixel Value
Transformation, RT Dose Grid Scaling) or a Modality LUT. The output dtype is the smallest exact
one: the stored type when there is no rescale, int16 for integral slope/intercept (int32 when the
values do not fit), float32 otherwise. :func:`unsupported_reason` says in words why an
instance cannot be decoded (header values out of range, a Modality LUT without its table) so the
loader skips that one file instead of failing on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

log = logging.getLogger(__name__)

NATIVE_LITTLE_ENDIAN = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
# pylibjpeg decodes 8/12-bit JPEG about twice as fast as the default (gdcm) here.
_PREFERRED_PLUGIN = {str(JPEGBaseline8Bit): "pylibjpeg", str(JPEGExtended12Bit): "pylibjpeg"}


class DecodeError(ValueError):
    """A frame that cannot be decoded (unsupported syntax, truncated data ...)."""


@dataclass(frozen=True)
class PixelLayout:
    """How one instance's pixels are stored."""

    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar_configuration: int
    transfer_syntax: str
    pixel_offset: int | None  # file offset of native Pixel Data, None when not readable directly

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples * self.bits_allocated // 8

    @property
    def is_color(self) -> bool:
        return self.samples > 1 or self.photometric == "PALETTE COLOR"

    @property
    def native_fast_path(self) -> bool:
        return (
            self.pixel_offset is not None
            and self.transfer_syntax in NATIVE_LITTLE_ENDIAN
            and self.bits_allocated in (8, 16, 32)
            and self.photometric in ("MONOCHROME1", "MONOCHROME2", "RGB")
        )


def pixel_layout(ds: Dataset) -> PixelLayout:
    """Layout of a dataset read by the header scan (``dcmread(..., defer_size=...)``)."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if k not in ds]
    if missing or "PixelData" not in ds:
        raise DecodeError(f"no image pixels (missing {', '.join(missing) or 'Pixel Data'})")
    tsyntax = (
        str(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian))
        if hasattr(ds, "file_meta")
        else str(ImplicitVRLittleEndian)
    )
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    offset = getattr(raw, "value_tell", None) if getattr(raw, "value", b"") is None else None
    bits_allocated = _us(ds, "BitsAllocated")
    return PixelLayout(
        rows=_us(ds, "Rows"),
        columns=_us(ds, "Columns"),
        samples=_us(ds, "SamplesPerPixel", 1) or 1,
        frames=_number_of_frames(ds),
        bits_allocated=bits_allocated,
        bits_stored=_us(ds, "BitsStored", bits_allocated) or bits_allocated,
        signed=_us(ds, "PixelRepresentation", 0) == 1,
        photometric=(_text(ds, "PhotometricInterpretation") or "MONOCHROME2").upper(),
        planar_configuration=_us(ds, "PlanarConfiguration", 0) or 0,
        transfer_syntax=tsyntax,
        pixel_offset=offset,
    )


def _number_of_frames(ds: Dataset) -> int:
    text = _text(ds, "NumberOfFrames")
    try:
        return max(int(text or 1), 1)
    except ValueError:
        raise DecodeError(f"Number of Frames {text!r} is not a number") from None


def unsupported_reason(layout: PixelLayout, ds: Dataset) -> str | None:
    """Why the pixels of an instance cannot be shown (None when they can)."""
    if layout.rows < 1 or layout.columns < 1:
        return f"image size {layout.rows}x{layout.columns} is empty"
    if layout.bits_allocated not in (1, 8, 16, 32):
        return f"Bits Allocated {layout.bits_allocated} is not supported"
    if not 1 <= layout.bits_stored <= layout.bits_allocated:
        return f"Bits Stored {layout.bits_stored} does not fit Bits Allocated {layout.bits_allocated}"
    if layout.samples not in (1, 3):
        return f"Samples per Pixel {layout.samples} is not supported"
    if has_modality_lut(ds):
        items = ds.get("ModalityLUTSequence") or []
        item = items[0] if len(items) else None
        if item is None or "LUTData" not in item or len(item.get("LUTDescriptor") or []) != 3:
            return "Modality LUT Sequence has no usable item (LUT Descriptor and LUT Data)"
    return None


_TAGS = {
    k: tag_for_keyword(k)
    for k in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "BitsAllocated",
        "BitsStored",
        "PixelRepresentation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "PhotometricInterpretation",
    )
}


def _text(ds: Dataset, keyword: str) -> str:
    """A single-valued text attribute (IS, CS) stripped of padding, raw bytes decoded directly; ""
    when absent or empty."""
    elem = ds.get_item(_TAGS[keyword], keep_deferred=True)
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement) and elem.value is not None:
        return elem.value.decode("ascii", "replace").strip("\0 ")
    value = elem.value
    return "" if value is None else str(value).strip()


def _us(ds: Dataset, keyword: str, default: int | None = None) -> int:
    """An unsigned-short attribute of the header scan. A little-endian value still in its raw
    2-byte form is read directly (pydicom's conversion of a few such values per file was ~15 % of
    the header scan); anything else goes through pydicom."""
    elem = ds.get_item(_TAGS[keyword], keep_deferred=True)
    if (
        isinstance(elem, RawDataElement)
        and elem.is_little_endian
        and elem.VR in (None, "US")
        and elem.value is not None
        and len(elem.value) == 2
    ):
        return int.from_bytes(elem.value, "little")
    value = ds.get(keyword, default)
    if value is None or value == "":
        return default  # type: ignore[return-value]
    return int(value)


def stored_range(layout: PixelLayout) -> tuple[int, int]:
    """Smallest and largest value the stored pixels can hold."""
    bits = layout.bits_stored
    if layout.signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _stored_dtype(layout: PixelLayout) -> np.dtype:
    kind = "i" if layout.signed else "u"
    return np.dtype(f"<{kind}{max(layout.bits_allocated // 8, 1)}")


def modality_dtype(layout: PixelLayout, rescales: list[tuple[float, float]]) -> tuple[np.dtype, bool]:
    """Output dtype for ``stored * slope + intercept`` over every frame's rescale, and whether
    values must be range-checked.

    Integral rescales give int16 even when the *declared* stored range would overflow it (a
    signed 16-bit CT with intercept -1024): real CT values fit, so the volume stays half the
    size; ``checked`` is then True and :func:`to_modality` raises :class:`RangeOverflow` for a
    slice that does not fit, so the loader can redo the series in int32.
    """
    if layout.photometric == "PALETTE COLOR":
        return np.dtype(np.uint8), False
    if layout.is_color:
        return np.dtype(np.uint8), False  # deeper colour is reduced to 8 bits (colour_to_8bit)
    if all(s == 1 and b == 0 for s, b in rescales):
        return _stored_dtype(layout).newbyteorder("="), False
    if not all(float(s).is_integer() and float(b).is_integer() for s, b in rescales):
        return np.dtype(np.float32), False
    lo, hi = stored_range(layout)
    ends = [v for s, b in rescales for v in (lo * s + b, hi * s + b)]
    info = np.iinfo(np.int16)
    if info.min <= min(ends) and max(ends) <= info.max:
        return np.dtype(np.int16), False
    return np.dtype(np.int16), True


class RangeOverflow(ValueError):
    """A rescaled slice does not fit the optimistic int16 output."""


def read_native_frame(path: str | Path, layout: PixelLayout, frame: int = 0) -> np.ndarray:
    """Stored values of one frame read straight from the file (native syntaxes only)."""
    if not layout.native_fast_path:
        raise DecodeError("frame is not stored natively")
    count = layout.frame_bytes
    with open(path, "rb") as fh:
        fh.seek(int(layout.pixel_offset) + frame * count)  # type: ignore[arg-type]
        data = fh.read(count)
    if len(data) != count:
        raise DecodeError(f"pixel data truncated: frame {frame} has {len(data)} of {count} bytes")
    arr = np.frombuffer(data, dtype=_stored_dtype(layout))
    if layout.bits_stored < layout.bits_allocated:
        arr = _mask_to_bits_stored(arr, layout)
    if layout.samples == 1:
        return arr.reshape(layout.rows, layout.columns)
    if layout.planar_configuration == 1:
        return arr.reshape(layout.samples, layout.rows, layout.columns).transpose(1, 2, 0)
    return arr.reshape(layout.rows, layout.columns, layout.samples)


def colour_to_8bit(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """Colour samples of more than 8 bits: their top 8 bits (of Bits Stored)."""
    if stored.dtype.itemsize == 1 or bits_stored <= 8:
        return stored
    return (stored >> (bits_stored - 8)).astype(np.uint8)


def _mask_to_bits_stored(arr: np.ndarray, layout: PixelLayout) -> np.ndarray:
    """Drop bits above Bits Stored (overlays, garbage) and sign-extend signed values."""
    shift = layout.bits_allocated - layout.bits_stored
    if layout.signed:
        return (arr << shift) >> shift  # arithmetic shift on the signed type sign-extends
    return arr & np.array((1 << layout.bits_stored) - 1, dtype=arr.dtype)


def decode_with_pydicom(ds: Dataset, frames: list[int] | None = None) -> np.ndarray:
    """Stored values (frames, rows, cols[, 3]) decoded by pydicom's plug-ins; colour as RGB."""
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ImplicitVRLittleEndian)
    if _gdcm_12_bit(str(tsyntax), int(ds.get("BitsStored", 8) or 8)) and getattr(ds, "filename", None):
        decoded_all = decode_with_gdcm(str(ds.filename))
        return decoded_all if frames is None else decoded_all[frames]
    try:
        decoder = get_decoder(tsyntax)
        decoded = []
        for f in range(nframes) if frames is None else frames:
            arr, meta = _decode_frame(decoder, ds, f, str(tsyntax))
            if str(meta.get("photometric_interpretation", "")).startswith("YBR_FULL"):
                arr = ybr_full_to_rgb(arr)
            decoded.append(arr)
    except Exception as exc:  # pydicom raises several types; callers need one clear error
        raise DecodeError(f"cannot decode pixels ({getattr(tsyntax, 'name', tsyntax)}): {exc}") from exc
    out = np.stack(decoded)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR":
        out = palette_to_rgb8(out, ds)
    return out


def _gdcm_12_bit(transfer_syntax: str, bits_stored: int) -> bool:
    return transfer_syntax == JPEGExtended12Bit and bits_stored > 8


def decodes_whole_file(layout: PixelLayout) -> bool:
    """Whether decoding any frame decodes them all (12-bit JPEG through GDCM): the loader then
    decodes a multi-frame file in one task instead of chunks."""
    return _gdcm_12_bit(layout.transfer_syntax, layout.bits_stored)


def decode_with_gdcm(path: str) -> np.ndarray:
    """Stored values (frames, rows, cols) of a greyscale file decoded by GDCM's own reader (used for
    12-bit JPEG Process 2/4, which it decodes as DCMTK does)."""
    import gdcm  # python-gdcm; imported here, it is only needed for this syntax

    reader = gdcm.ImageReader()
    reader.SetFileName(path)
    if not reader.Read():
        raise DecodeError(f"GDCM cannot read {Path(path).name}")
    image = reader.GetImage()
    fmt = image.GetPixelFormat()
    if fmt.GetSamplesPerPixel() != 1:
        raise DecodeError("12-bit JPEG colour is not supported")
    kinds = {gdcm.PixelFormat.UINT8: "u1", gdcm.PixelFormat.INT8: "i1", gdcm.PixelFormat.UINT16: "<u2"}
    kinds[gdcm.PixelFormat.INT16] = "<i2"
    dtype = kinds.get(fmt.GetScalarType())
    if dtype is None:
        raise DecodeError(f"GDCM decoded an unexpected sample type {fmt.GetScalarTypeAsString()}")
    raw = image.GetBuffer().encode("utf-8", "surrogateescape")  # SWIG hands the bytes over as str
    dims = [image.GetDimension(i) for i in range(image.GetNumberOfDimensions())]
    columns, rows = dims[0], dims[1]
    frames = dims[2] if len(dims) > 2 else 1
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size != frames * rows * columns:
        raise DecodeError(f"GDCM decoded {arr.size} samples, expected {frames * rows * columns}")
    return arr.reshape(frames, rows, columns)


def palette_to_rgb8(indices: np.ndarray, ds: Dataset) -> np.ndarray:
    """Palette colour -> 8-bit RGB (16-bit LUT entries keep their high byte, as viewers show them)."""
    rgb = apply_color_lut(indices, ds)
    if rgb.dtype.itemsize > 1:
        rgb = (rgb >> 8).astype(np.uint8)
    return rgb


def _decode_frame(decoder: object, ds: Dataset, frame: int, tsyntax: str) -> tuple[np.ndarray, dict]:
    plugin = _PREFERRED_PLUGIN.get(tsyntax, "")
    if plugin:
        try:
            return decoder.as_array(ds, index=frame, as_rgb=False, decoding_plugin=plugin)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - fall back to pydicom's own plug-in order
            log.debug("%s could not decode frame %d (%s); trying pydicom's default order", plugin, frame, exc)
    return decoder.as_array(ds, index=frame, as_rgb=False)  # type: ignore[attr-defined]


def ybr_full_to_rgb(arr: np.ndarray) -> np.ndarray:
    """8-bit YCbCr (JPEG/JFIF "full" range, DICOM YBR_FULL) to RGB, rounded as pydicom does.

    Per channel in float32 instead of pydicom's (N, 3) @ (3, 3) matmul: ~5x faster, which
    matters for 100+ frame ultrasound cines."""
    y = arr[..., 0].astype(np.float32)
    cb = arr[..., 1].astype(np.float32) - 128.0
    cr = arr[..., 2].astype(np.float32) - 128.0
    out = np.empty(arr.shape, dtype=np.uint8)
    for channel, value in enumerate(
        (
            y + np.float32(1.402) * cr,
            y + np.float32(-0.114 * 1.772 / 0.587) * cb + np.float32(-0.299 * 1.402 / 0.587) * cr,
            y + np.float32(1.772) * cb,
        )
    ):
        value += 0.5
        np.floor(value, out=value)
        np.clip(value, 0, 255, out=value)
        out[..., channel] = value
    return out


def to_modality(
    stored: np.ndarray,
    slope: float,
    intercept: float,
    dtype: np.dtype,
    out: np.ndarray | None = None,
    *,
    checked: bool = False,
) -> np.ndarray:
    """``stored * slope + intercept`` in ``dtype``, written into ``out`` when given.

    ``checked``: the integer result may not fit ``dtype``; compute wide, raise
    :class:`RangeOverflow` if it does not fit."""
    if out is None:
        out = np.empty(stored.shape, dtype=dtype)
    if slope == 1 and intercept == 0 and not checked:
        np.copyto(out, stored, casting="unsafe")
    elif dtype.kind == "f":
        np.multiply(stored, np.float32(slope) if dtype == np.float32 else slope, out=out, casting="unsafe")
        out += intercept
    elif checked or slope != 1:
        wide = stored.astype(np.int64 if stored.dtype.itemsize >= 4 else np.int32)
        if slope != 1:
            wide *= int(slope)
        wide += int(intercept)
        if checked:
            info = np.iinfo(dtype)
            if wide.min() < info.min or wide.max() > info.max:
                raise RangeOverflow(f"rescaled values exceed {dtype}")
        np.copyto(out, wide, casting="unsafe")
    else:
        np.copyto(out, stored, casting="unsafe")
        out += int(intercept)
    return out


def has_modality_lut(ds: Dataset) -> bool:
    return "ModalityLUTSequence" in ds


def apply_lut(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT Sequence transform (rare; used instead of rescale)."""
    return apply_modality_lut(stored, ds)


def read_dataset(path: str | Path) -> Dataset:
    """Full parse of a file, for the pydicom decode path."""
    try:
        return dcmread_tolerant(path)
    except Exception as exc:
        raise DecodeError(f"cannot read {Path(path).name}: {exc}") from exc


def dcmread_tolerant(path: str | Path, defer_size: int | None = None) -> Dataset:
    """``pydicom.dcmread``, also of a bare data set without the Part 10 preamble and file meta
    header (older modalities and archives write those; DCMTK and GDCM read them): accepted when
    it names its SOP Class and Instance, with the transfer syntax it was found to use."""
    try:
        return pydicom.dcmread(path, defer_size=defer_size)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, defer_size=defer_size, force=True)
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise
    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    ds.file_meta = meta
    return ds
