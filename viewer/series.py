"""Instances -> stacks: header scan, grouping, sorting and splitting of a series.

A *stack* is the set of frames that can form one volume: same series, same frame of reference,
same image orientation (within 1e-3), same matrix size, pixel spacing and sample format, sorted
by position along the slice normal (never by Instance Number, which scanners get wrong).
A series that mixes orientations or image sizes (a scout plus axials, a 3-plane localiser) is
split into several stacks instead of being forced into one volume. Frames repeated at the same
position (dynamic/multi-echo series) are split into one stack per repetition.

Frames come from classic single-frame instances (Image Position/Orientation (Patient)), from
Enhanced CT/MR multi-frames (Per-Frame and Shared Functional Groups: Plane Position, Plane
Orientation, Pixel Measures, Pixel Value Transformation, Frame Content) and from multi-frame
instances without patient geometry (ultrasound cine, XA, secondary capture), which become one
stack per instance with frames in file order. A Siemens mosaic gives one frame per tile
(:mod:`viewer.mosaic`).

The header scan keeps only images: objects of other kinds (SR, KOS, PR, SEG, RTSTRUCT, PDF ...;
:mod:`viewer.object_kinds`, by SOP Class) and files that cannot be read or decoded (truncated,
header values out of range) are left out one by one, each as a :class:`SkippedFile` saying why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from viewer.decode import DecodeError, PixelLayout, dcmread_tolerant, pixel_layout, unsupported_reason
from viewer.mosaic import Mosaic, mosaic_of
from viewer.object_kinds import KIND_LABELS, object_kind

ORIENTATION_TOLERANCE = 1e-3
POSITION_TOLERANCE_MM = 1e-3
_DEFER_SIZE = 2048  # bytes: larger element values (Pixel Data) are skipped and read later


@dataclass
class InstanceHeader:
    """One file's header (pixels not read) and how its pixels are laid out."""

    path: Path
    ds: Dataset
    layout: PixelLayout
    mosaic: Mosaic | None = None

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, columns) of one frame as shown: a mosaic's tile, else the stored image."""
        if self.mosaic is not None:
            return self.mosaic.rows, self.mosaic.columns
        return self.layout.rows, self.layout.columns


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a load, and why (for the user: the app and the CLI list these)."""

    path: Path
    kind: str  # an object kind of viewer.object_kinds other than "image", or "unreadable"
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


class NotLoadable(DecodeError):
    """A file the image loader does not take: not an image, or unreadable (``kind`` says which)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class FrameRef:
    """One frame of one instance, with its geometry when the instance has patient geometry."""

    header: InstanceHeader
    frame: int
    position: np.ndarray | None  # Image Position (Patient), LPS mm
    row_dir: np.ndarray | None  # direction of increasing column index
    col_dir: np.ndarray | None  # direction of increasing row index
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    slope: float = 1.0
    intercept: float = 0.0
    order_key: tuple = ()  # acquisition / temporal / instance ordering of repeated positions
    stack_id: str = ""
    window: tuple[float, float] | None = None  # (width, centre) from the frame's VOI
    rescale_type: str = ""  # Rescale Type of the frame's own rescale (e.g. "HU"; "US" = unspecified)
    tile: int | None = None  # the tile of a mosaic frame

    @property
    def has_geometry(self) -> bool:
        return self.position is not None and self.row_dir is not None and self.pixel_spacing is not None

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)  # type: ignore[arg-type]


@dataclass
class Stack:
    """Frames that form one volume, sorted along the slice normal (geometry) or in file order."""

    series_uid: str
    frames: list[FrameRef]
    warnings: list[str] = field(default_factory=list)

    @property
    def has_geometry(self) -> bool:
        return self.frames[0].has_geometry

    @property
    def first(self) -> FrameRef:
        return self.frames[0]


def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        floats = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(floats) != n or not all(math.isfinite(v) for v in floats):
        return None
    return np.array(floats)


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def text_values(ds: Dataset, keyword: str) -> list[str]:
    """Parts of a text element (DS, IS, UI, CS, SH ...) as strings, without pydicom's value
    conversion, which otherwise dominates the header scan (~10x slower); [] when absent/empty."""
    elem = ds.get_item(_tag(keyword), keep_deferred=True)
    if elem is None:
        return []
    if isinstance(elem, RawDataElement):
        if not elem.value:
            return []
        parts = (p.strip("\0 ") for p in elem.value.decode("ascii", "replace").split("\\"))
        return [p for p in parts if p]
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, list | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


def text_value(ds: Dataset, keyword: str, default: str = "") -> str:
    parts = text_values(ds, keyword)
    return "\\".join(parts) if parts else default


def _item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _functional_group(ds: Dataset, frame: int, keyword: str) -> Dataset | None:
    """The frame's item of a functional group macro, per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        item = _item(per_frame[frame], keyword)
        if item is not None:
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        return _item(shared[0], keyword)
    return None


def _windows(src: Dataset) -> tuple[float, float] | None:
    width, centre = (
        _floats(text_values(src, "WindowWidth")[:1], 1),
        _floats(text_values(src, "WindowCenter")[:1], 1),
    )
    if width is None or centre is None:
        return None
    return float(width[0]), float(centre[0])


def _rescale(src: Dataset | None) -> tuple[float, float] | None:
    if src is None:
        return None
    slope, intercept = (
        _floats(text_values(src, "RescaleSlope"), 1),
        _floats(text_values(src, "RescaleIntercept"), 1),
    )
    if slope is None and intercept is None:
        return None
    return (
        float(slope[0]) if slope is not None and slope[0] != 0 else 1.0,
        float(intercept[0]) if intercept is not None else 0.0,
    )


def _spacing(values: object) -> tuple[float, float] | None:
    arr = _floats(values, 2) if values is not None else None
    return (float(arr[0]), float(arr[1])) if arr is not None and np.all(arr > 0) else None


def frames_of(header: InstanceHeader) -> list[FrameRef]:
    """Every frame of an instance with its geometry, rescale and ordering keys."""
    ds, layout = header.ds, header.layout
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    base_order = tuple(
        _first_int(text_values(ds, k))
        for k in ("AcquisitionNumber", "TemporalPositionIdentifier", "EchoNumbers", "InstanceNumber")
    )
    grid_offsets = (
        _floats(text_values(ds, "GridFrameOffsetVector"), layout.frames) if layout.frames > 1 else None
    )
    scaling = _floats(text_values(ds, "DoseGridScaling"), 1)
    dose_scaling = (float(scaling[0]), 0.0) if scaling is not None and scaling[0] > 0 else None
    frames = []
    for f in range(layout.frames):
        if enhanced:
            pos = _functional_group(ds, f, "PlanePositionSequence")
            ori = _functional_group(ds, f, "PlaneOrientationSequence")
            meas = _functional_group(ds, f, "PixelMeasuresSequence")
            content = _functional_group(ds, f, "FrameContentSequence")
            voi = _functional_group(ds, f, "FrameVOILUTSequence")
            position = _floats(text_values(pos, "ImagePositionPatient"), 3) if pos is not None else None
            iop = _floats(text_values(ori, "ImageOrientationPatient"), 6) if ori is not None else None
            spacing = _spacing(text_values(meas, "PixelSpacing")) if meas is not None else None
            transform = _functional_group(ds, f, "PixelValueTransformationSequence")
            own = _rescale(transform)
            rescale = own or _rescale(ds)
            rescale_type = text_value(transform if own else ds, "RescaleType")  # type: ignore[arg-type]
            stack_id = str(content.get("StackID", "")) if content is not None else ""
            dims = (
                tuple(_first_int([v]) for v in _as_list(content.get("DimensionIndexValues")))
                if content is not None
                else ()
            )
            order = base_order + (
                int(content.get("TemporalPositionIndex", 0) or 0) if content is not None else 0,
                *dims,
                f,
            )
            window = _windows(voi) if voi is not None else _windows(ds)
        else:
            position = _floats(text_values(ds, "ImagePositionPatient"), 3)
            iop = _floats(text_values(ds, "ImageOrientationPatient"), 6)
            if (
                layout.frames > 1
            ):  # multi-frame with one plane: only a grid offset vector (RT dose) places frames
                position = _grid_frame_position(position, iop, grid_offsets, f)
            spacing = _spacing(text_values(ds, "PixelSpacing"))
            rescale = _rescale(ds) or dose_scaling
            rescale_type = text_value(ds, "RescaleType")
            stack_id = ""
            order = base_order + (f,)
            window = _windows(ds)
        row_dir = col_dir = None
        if iop is not None:
            row_dir, col_dir = _orthonormal(iop)
        if row_dir is None or position is None:
            position = row_dir = col_dir = None
        slope, intercept = rescale or (1.0, 0.0)
        frames.append(
            FrameRef(
                header,
                f,
                position,
                row_dir,
                col_dir,
                spacing,
                slope,
                intercept,
                order,
                stack_id,
                window,
                rescale_type,
            )
        )
    if header.mosaic is not None and len(frames) == 1:
        return _mosaic_frames(frames[0], header.mosaic)
    return frames


def _mosaic_frames(base: FrameRef, mosaic: Mosaic) -> list[FrameRef]:
    """One frame per tile of a mosaic, placed as :mod:`viewer.mosaic` describes."""
    positions: list[np.ndarray | None] = [None] * mosaic.count
    if base.has_geometry:
        spacing = nominal_slice_spacing(base.header.ds)
        positions = mosaic.positions(base.position, base.row_dir, base.col_dir, base.pixel_spacing, spacing)  # type: ignore[arg-type]
    return [
        replace(base, position=p, tile=t, order_key=(*base.order_key, t)) for t, p in enumerate(positions)
    ]


def nominal_slice_spacing(ds: Dataset) -> float:
    """Spacing Between Slices, else Slice Thickness, else 1 mm."""
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = _floats(text_values(ds, key)[:1], 1)
        if value is not None and value[0] > 0:
            return float(value[0])
    return 1.0


def _grid_frame_position(
    position: np.ndarray | None, iop: np.ndarray | None, offsets: np.ndarray | None, frame: int
) -> np.ndarray | None:
    """Position of frame ``frame`` of a multi-frame placed by Grid Frame Offset Vector (offsets
    along the normal from Image Position; RT Dose), None without such a vector."""
    if position is None or iop is None or offsets is None:
        return None
    return position + float(offsets[frame]) * np.cross(iop[:3], iop[3:])


def _as_list(value: object) -> list:
    """A multi-valued attribute as a list (pydicom gives a bare value when VM is 1)."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | MultiValue) else [value]


def _first_int(values: list[str]) -> int:
    try:
        return int(float(values[0])) if values else 0
    except ValueError:
        return 0


def _orthonormal(iop: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    row, col = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6 or abs(np.dot(row / nr, col / nc)) > 1e-2:
        return None, None
    return row / nr, col / nc


def read_header(path: str | Path) -> InstanceHeader:
    """Parse an image file's header; Pixel Data is skipped (its offset kept) when stored natively.

    Raises :class:`NotLoadable` for a file that is not an image or cannot be read or decoded."""
    path = Path(path)
    try:
        ds = dcmread_tolerant(path, defer_size=_DEFER_SIZE)
    except InvalidDicomError:
        raise NotLoadable("unreadable", "not a DICOM file") from None
    except Exception as exc:
        raise NotLoadable("unreadable", f"not a readable DICOM file ({exc})") from exc
    truncated = _truncation(ds, path)
    if truncated:
        raise NotLoadable("unreadable", truncated)
    meta = getattr(ds, "file_meta", None)
    sop_class = text_value(ds, "SOPClassUID") or str(meta.get("MediaStorageSOPClassUID", "") if meta else "")
    kind = object_kind(sop_class, "PixelData" in ds and "Rows" in ds)
    if kind != "image":
        raise NotLoadable(kind, f"{KIND_LABELS[kind]}, not an image: left out")
    try:
        layout = pixel_layout(ds)
        problem = unsupported_reason(layout, ds)
        mosaic = mosaic_of(ds, layout.rows, layout.columns) if layout.frames == 1 else None
    except DecodeError as exc:
        raise NotLoadable("unreadable", str(exc)) from exc
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise NotLoadable("unreadable", f"invalid image attributes ({exc})") from exc
    if problem:
        raise NotLoadable("unreadable", problem)
    return InstanceHeader(path, ds, layout, mosaic)


def _truncation(ds: Dataset, path: Path) -> str | None:
    """Why the file is cut short, if it is: pydicom reads a truncated file without an error, as an
    empty data set (end of file inside encapsulated pixel data) or with a short last value."""
    if not len(ds):
        size = path.stat().st_size
        return f"file ends early ({size} bytes): no data set could be read (truncated?)"
    last = ds.get_item(next(reversed(ds.keys())), keep_deferred=True)
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF:
        # (deferred native Pixel Data cut short is left to the decoder: the slice keeps its place
        # in the stack, shown blank, instead of leaving a gap)
        end = last.value_tell + last.length
        size = path.stat().st_size
        if last.value is not None and len(last.value) < last.length:
            return f"file is truncated: element {last.tag} declares {last.length} bytes, fewer are present"
        if "PixelData" not in ds and 0 < size - end < 8:  # a cut element header pydicom ignored
            return f"file is truncated after element {last.tag} ({size - end} stray bytes)"
    return None


def scan_headers(paths: Sequence[str | Path]) -> tuple[list[InstanceHeader], list[SkippedFile]]:
    """Headers of all image files, and the files left out (not images, unreadable) with why.

    Sequential on purpose: header parsing is pure Python, and threads only fight over the GIL
    (measured slower with 2 threads on 2 cores)."""
    headers: list[InstanceHeader] = []
    skipped: list[SkippedFile] = []
    for p in map(Path, paths):
        try:
            headers.append(read_header(p))
        except NotLoadable as exc:
            skipped.append(SkippedFile(p, exc.kind, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one odd file must never cost the others
            skipped.append(SkippedFile(p, "unreadable", f"cannot be read ({type(exc).__name__}: {exc})"))
    return headers, skipped


def _plane_family(f: FrameRef) -> tuple[float, ...]:
    """Orientation and pixel spacing as plain floats (fast to compare for thousands of frames)."""
    return (*f.row_dir.tolist(), *f.col_dir.tolist(), *f.pixel_spacing)  # type: ignore[union-attr, misc]


def _same_plane_family(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(x - y) < ORIENTATION_TOLERANCE for x, y in zip(a[:6], b[:6])) and all(
        abs(x - y) < 1e-4 for x, y in zip(a[6:], b[6:])
    )


def _format_key(f: FrameRef) -> tuple:
    ds, lay = f.header.ds, f.header.layout
    return (
        text_value(ds, "SeriesInstanceUID"),
        text_value(ds, "FrameOfReferenceUID"),
        lay.rows,
        lay.columns,
        lay.samples,
        lay.photometric == "PALETTE COLOR",
        f.stack_id,
    )


def drop_duplicate_instances(headers: Iterable[InstanceHeader]) -> tuple[list[InstanceHeader], list[str]]:
    """Keep the first file of each SOP Instance UID (the same object given twice must not
    become a second 'phase'); a warning says how many were left out."""
    seen: set[str] = set()
    kept: list[InstanceHeader] = []
    dropped = 0
    for h in headers:
        uid = text_value(h.ds, "SOPInstanceUID")
        if uid and uid in seen:
            dropped += 1
            continue
        seen.add(uid)
        kept.append(h)
    warnings = (
        [f"{dropped} file(s) repeat an instance already loaded (same SOP Instance UID): ignored"]
        if dropped
        else []
    )
    return kept, warnings


def build_stacks(headers: Iterable[InstanceHeader]) -> list[Stack]:
    """Group frames into stacks: split by format and orientation, sort along the normal, split
    repeated positions into one stack per repetition."""
    groups: list[list[FrameRef]] = []
    stacks: list[Stack] = []
    by_key: dict[tuple, list[tuple[tuple[float, ...], list[FrameRef]]]] = {}
    for header in headers:
        try:
            frames = frames_of(header)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # malformed geometry attributes: show the frames without 3D geometry rather than fail
            frames = [FrameRef(header, f, None, None, None, None) for f in range(header.layout.frames)]
            stacks.append(
                Stack(
                    text_value(header.ds, "SeriesInstanceUID"),
                    frames,
                    [
                        f"{header.path.name}: unreadable geometry ({exc}); shown as plain frames without rescale"
                    ],
                )
            )
            continue
        if not all(f.has_geometry for f in frames):
            stacks.append(Stack(text_value(header.ds, "SeriesInstanceUID"), frames))
            continue
        for fr in frames:
            families = by_key.setdefault(_format_key(fr), [])
            family = _plane_family(fr)
            for key, members in families:
                if _same_plane_family(key, family):
                    members.append(fr)
                    break
            else:
                families.append((family, [fr]))
                groups.append(families[-1][1])
    geometric = [s for g in groups for s in _sort_and_split(g)]
    split_note = []
    series_counts: dict[str, int] = {}
    for s in geometric:
        series_counts[s.series_uid] = series_counts.get(s.series_uid, 0) + 1
    for uid, count in series_counts.items():
        if count > 1:
            split_note.append(
                f"series {uid} was split into {count} stacks (different orientation, "
                "image size or repeated positions)"
            )
    for s in geometric:
        if series_counts[s.series_uid] > 1:
            s.warnings.extend(n for n in split_note if s.series_uid in n)
    # Largest stacks first within each series so the main volume comes before scouts; equal
    # stacks (phases of a dynamic series) in acquisition order.
    geometric.sort(key=lambda s: (s.series_uid, -len(s.frames), s.first.order_key))
    return geometric + stacks


def _sort_and_split(frames: list[FrameRef]) -> list[Stack]:
    """Sort frames along the normal; frames at one position become repetitions (one stack each),
    frames at one normal distance but shifted in-plane (tiles, stations) separate tracks."""
    normal = frames[0].normal
    frames = sorted(
        frames, key=lambda f: (round(float(np.dot(f.position, normal)) / POSITION_TOLERANCE_MM), f.order_key)
    )
    levels: list[list[list[FrameRef]]] = []  # per normal distance: the distinct origins, each its repetitions
    last = None
    for fr in frames:
        d = float(np.dot(fr.position, normal))
        if last is None or abs(d - last) > POSITION_TOLERANCE_MM:
            levels.append([])
        last = d
        for origin in levels[-1]:
            if np.linalg.norm(fr.position - origin[0].position) <= 10 * POSITION_TOLERANCE_MM:
                origin.append(fr)
                break
        else:
            levels[-1].append([fr])
    uid = text_value(frames[0].header.ds, "SeriesInstanceUID")
    tracks = _in_plane_tracks(levels, normal)
    out: list[Stack] = []
    for track in tracks:
        repeats = max(len(p) for p in track)
        stacks = [Stack(uid, [p[r] for p in track if len(p) > r]) for r in range(repeats)]
        if repeats > 1:
            for s in stacks:
                s.warnings.append(
                    f"{repeats} frames share each slice position: split into {repeats} volumes "
                    "(dynamic, multi-echo or repeated acquisition)"
                )
        out += stacks
    if len(tracks) > 1:
        shared = sum(1 for level in levels if len(level) > 1)
        for s in out:
            s.warnings.append(
                f"{shared} slice position(s) hold images shifted in-plane (tiles or stations at "
                f"the same position along the normal): split into {len(tracks)} stacks"
            )
    return out


def _in_plane_tracks(levels: list[list[list[FrameRef]]], normal: np.ndarray) -> list[list[list[FrameRef]]]:
    """Split the positions into tracks holding one origin per normal distance: origins join the
    tracks whose last origin is nearest in-plane, closest pairs first (a gantry tilt drifts a little
    per slice, a second tile sits far off); an origin left over starts a new track."""
    if all(len(level) == 1 for level in levels):
        return [[level[0] for level in levels]]
    tracks: list[list[list[FrameRef]]] = []

    def in_plane(origin: list[FrameRef]) -> np.ndarray:
        p = origin[0].position
        return p - float(p @ normal) * normal  # type: ignore[operator]

    for level in levels:
        here = [in_plane(origin) for origin in level]
        pairs = sorted(
            (float(np.linalg.norm(in_plane(track[-1]) - h)), o, t)
            for o, h in enumerate(here)
            for t, track in enumerate(tracks)
        )
        placed: set[int] = set()
        used: set[int] = set()
        for _, o, t in pairs:  # closest pairs first
            if o not in placed and t not in used:
                tracks[t].append(level[o])
                placed.add(o)
                used.add(t)
        tracks += [[level[o]] for o in range(len(level)) if o not in placed]
    return tracks
