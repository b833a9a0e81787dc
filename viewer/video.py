"""DICOM video objects (MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265 transfer syntaxes) decoded with PyAV.

pydicom's pixel decoders do not handle these syntaxes. The standard (PS3.5 8.2.5-8.2.8) puts the
whole video stream, split into any number of fragments, in encapsulated Pixel Data with an empty
Basic Offset Table; the fragments are joined here and handed to FFmpeg (through PyAV), which
probes the container (elementary stream, MPEG-2 program/transport stream, MP4) itself. Frames come
out as 8-bit RGB, the same as an ultrasound cine, and are written straight into the caller's
preallocated array one at a time, so memory stays at the final volume plus the compressed stream.
``keep`` picks which decoded frames are kept (every n-th when the loader must fit a memory budget).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import av
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
)

from viewer.decode import DecodeError

# Transfer syntax -> FFmpeg demuxer to try when probing does not recognise the stream.
VIDEO_TRANSFER_SYNTAXES: dict[str, str] = {
    **{str(uid): "mpegvideo" for uid in (MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF)},
    **{
        str(uid): "h264"
        for uid in (
            MPEG4HP41,
            MPEG4HP41F,
            MPEG4HP41BD,
            MPEG4HP41BDF,
            MPEG4HP422D,
            MPEG4HP422DF,
            MPEG4HP423D,
            MPEG4HP423DF,
            MPEG4HP42STEREO,
            MPEG4HP42STEREOF,
        )
    },
    **{str(uid): "hevc" for uid in (HEVCMP51, HEVCM10P51)},
}


def is_video_syntax(transfer_syntax: str) -> bool:
    return str(transfer_syntax) in VIDEO_TRANSFER_SYNTAXES


def video_stream(ds: Dataset) -> bytes:
    """The video bit stream of an encapsulated video object: every fragment, in order."""
    try:
        buffer = io.BytesIO(ds.PixelData)
        parse_basic_offsets(buffer)
        return b"".join(generate_fragments(buffer))
    except Exception as exc:  # pydicom raises several types for malformed items
        raise DecodeError(f"cannot read the encapsulated video stream: {exc}") from exc


def _open(stream: bytes, transfer_syntax: str) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(stream), mode="r")
    except av.error.FFmpegError:
        fallback = VIDEO_TRANSFER_SYNTAXES.get(str(transfer_syntax))
        if fallback is None:
            raise
        return av.open(io.BytesIO(stream), mode="r", format=fallback)


def decode_video(
    ds: Dataset, out: np.ndarray, keep: Mapping[int, int], on_frame: Callable[[int], None] | None = None
) -> list[float]:
    """Decode the video of ``ds`` into ``out`` (k, rows, cols, 3) uint8.

    ``keep`` maps a decoded frame number (0-based, display order) to the slice ``k`` of ``out``
    it goes to; other frames are decoded (needed for the following ones) and dropped.
    ``on_frame(k)`` is called after each kept frame. Returns the presentation time (ms from the
    first frame) of every decoded frame, for files without Cine timing attributes.
    Raises :class:`DecodeError` when FFmpeg cannot open or decode the stream."""
    tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    rows, cols = out.shape[1:3]
    stream = video_stream(ds)
    times_s: list[float] = []
    try:
        with _open(stream, tsyntax) as container:
            if not container.streams.video:
                raise DecodeError("the video object holds no video stream")
            vstream = container.streams.video[0]
            vstream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(vstream)):
                times_s.append(_frame_time_s(frame, n, vstream))
                k = keep.get(n)
                if k is None:
                    if n > max(keep, default=-1):
                        break
                    continue
                out[k] = frame.to_ndarray(format="rgb24", width=cols, height=rows)
                if on_frame is not None:
                    on_frame(k)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"cannot decode the video stream ({tsyntax}): {exc}") from exc
    if not times_s:
        raise DecodeError("the video stream holds no decodable frame")
    start = times_s[0]
    return [(t - start) * 1000.0 for t in times_s]


def _frame_time_s(frame: av.VideoFrame, n: int, stream: av.video.stream.VideoStream) -> float:
    """Presentation time of a decoded frame. A raw elementary stream has no timestamps: then the
    rate FFmpeg reads from the codec's timing information (``guessed_rate``; ``average_rate`` is
    the raw demuxer's default of 25 there), else 10 frames/s."""
    if frame.time is not None and frame.pts is not None:
        return float(frame.time)
    rate = stream.guessed_rate or stream.average_rate or 0
    return n / float(rate) if rate else n / 10.0
