"""Files -> geometry-correct :class:`~viewer.volume.Volume` objects, progressively and in parallel.

Public API (used by the Qt viewer, the snapshot command and the AI input)::

    result = load_series(paths, on_slice=callback, workers=None, memory_budget_bytes=None)
    result.volumes   # list[Volume], largest geometric stack of each series first
    result.warnings  # list[str] for the user: tilt, irregular spacing, split series, bad files
    result.skipped   # list[SkippedFile]: files left out (not images, unreadable), each with why

One odd file never fails a load: a non-image object (SR, KOS, PR, SEG, RTSTRUCT, PDF; by SOP
Class, :mod:`viewer.object_kinds`) or a file that cannot be read or decoded is left out with a
:class:`~viewer.series.SkippedFile` (also in ``warnings``); :class:`LoadError` only when nothing
is left.

Progress: ``on_slice(SliceEvent)`` is called in the *calling* thread (run ``load_series`` in a
worker thread and forward the events to the GUI thread). The first event (``preview=True``)
carries one decoded image from the middle of the file list before any other header is read,
so something appears within milliseconds. Then the headers are scanned, stacks built, and each
volume is filled middle slice first, outwards, with one event per slice (``event.volume`` is
the volume being filled; slices not yet loaded are zero). If the stack needs geometry correction
the volume given at the end (in ``LoadResult``) is the resampled one. To cancel (the user
opened another series), raise :class:`LoadCancelled` from ``on_slice``: queued decodes are
dropped and the exception propagates.

DICOM video objects (MPEG-2, H.264, HEVC transfer syntaxes) are decoded by :mod:`viewer.video`
(PyAV/FFmpeg) frame by frame in order into the same RGB cine volume, with ``frame_start_times_ms`` from
the Cine attributes or, without them, the stream (``metadata["frame_timing_source"]``); a video
larger than the memory budget keeps one frame in n (with a warning) instead of being refused.

Decoding runs in a thread pool: native pixels are read with numpy and greyscale JPEG Lossless /
JPEG 2000 decoded by imagecodecs (:mod:`viewer.decode_gil_free`), both without the GIL; other
compressed single-frame files (JPEG-LS, RLE, colour ...), whose pydicom decoders hold the GIL,
go to worker processes (:mod:`viewer.decode_processes`), except the first (middle) slices. The volume is
allocated once in its final dtype (int16 for usual CT); no float copy is made unless rescale
slope/intercept are not integral. ``memory_budget_bytes`` (default: half the available RAM)
refuses a series whose volumes would not fit, with a clear :class:`MemoryBudgetError`.

``Volume.metadata`` keys: ``modality``, ``series_uid``, ``study_uid``, ``series_number``,
``series_description``, ``frame_of_reference_uid``, ``sop_instance_uids`` (per slice, sorted
order), ``sources`` (per slice ``(path, frame)``), ``file_windows`` (``[(width, centre, name)]``
of the *middle* slice, the one the views open on: scanners such as Siemens MR store a window per
slice and the first slice's can be far off; the views and the AI input open with the first of
these), ``slice_windows`` (per slice ``(width, centre)`` or None; empty once resampled),
``photometric``, ``invert`` (MONOCHROME1), ``has_patient_geometry`` (False for cine/projection
images: the direction is then identity and planes other than the native one are meaningless),
``rescale_type`` (e.g. ``"HU"``), ``patient_orientation`` (projection images), ``warnings``,
``geometry_corrected``, ``tilt_degrees`` (a corrected, i.e. resampled, volume has empty
``sources``/``sop_instance_uids`` and keeps ``acquired_sop_instance_uids``, ``acquired_sources`` and
``acquired_positions_mm`` (along the slice axis) of the acquired slices instead: use
:mod:`viewer.sources` to map a plane index or LPS point to its source instance, for every volume,
since a standard plane's index counts from the feet/anterior/right, not in voxel order),
``pixel_spacing_known`` (False: no trustworthy spacing,
e.g. ultrasound without calibrated regions, secondary capture, video: ``Volume.spacing`` is then 1
and lengths/areas must be given in pixels) and ``pixel_spacing_source`` (``"PixelSpacing"``,
``"ImagerPixelSpacing (at detector, not calibrated)"``, ``"US regions"`` or None).
``Volume.frame_start_times_ms`` holds, for cine, the time of each frame from the start of the cine (ms).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from hulu_common.files import expand_paths
from viewer.decode import (
    DecodeError,
    RangeOverflow,
    apply_lut,
    colour_to_8bit,
    decode_with_pydicom,
    decodes_whole_file,
    has_modality_lut,
    modality_dtype,
    read_dataset,
    read_native_frame,
    to_modality,
)
from viewer.decode_gil_free import GilFreeUnsuitable, decode_frames, gil_free_decodable
from viewer.decode_processes import decode_file, decode_processes, start_in_background
from viewer.decode_processes import forget as _forget_processes
from viewer.geometry import analyse_positions, resample_to_regular
from viewer.series import (
    FrameRef,
    InstanceHeader,
    SkippedFile,
    Stack,
    build_stacks,
    drop_duplicate_instances,
    nominal_slice_spacing,
    read_header,
    scan_headers,
    text_value,
)
from viewer.tools import SPACING_IMAGER, SPACING_PIXEL, SPACING_US
from viewer.video import decode_video, is_video_syntax
from viewer.volume import Volume

log = logging.getLogger(__name__)

_CHUNK_FRAMES = 8  # compressed multi-frame: frames decoded per task
_IN_PROCESS_HEAD = 2  # first tasks (middle slices) decoded here even when worker processes help
_PROCESS_MIN_TASKS = 8  # fewer compressed files than this: not worth the worker processes
_US_UNITS_CM = 3  # Physical Units X/Y Direction (0018,6024/6026): 3 = cm


class MemoryBudgetError(MemoryError):
    """The series would need more memory than allowed."""


class LoadError(ValueError):
    """Nothing loadable in the given files."""


class LoadCancelled(Exception):
    """Raised by an ``on_slice`` callback to stop a load."""


@dataclass
class SliceEvent:
    """Progress: one slice is ready."""

    volume_index: int  # index into the final LoadResult.volumes; -1 for the preview
    k: int  # slice index in ``volume.voxels`` (sorted order)
    pixels: np.ndarray  # modality values of that slice
    volume: Volume | None  # the volume being filled (None for the preview)
    loaded: int
    total: int
    preview: bool = False


@dataclass
class LoadResult:
    volumes: list[Volume]
    warnings: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


SliceCallback = Callable[[SliceEvent], None]


def default_workers() -> int:
    return max(2, min(16, os.cpu_count() or 2))


def load_series(
    paths: Sequence[str | Path],
    *,
    on_slice: SliceCallback | None = None,
    workers: int | None = None,
    memory_budget_bytes: int | None = None,
) -> LoadResult:
    """Load the image files of one or more series into volumes (see the module docstring).

    A folder among ``paths`` stands for every file below it."""
    paths = expand_paths(paths)
    if not paths:
        raise LoadError("no files given")
    workers = workers or default_workers()
    if on_slice is not None:
        _emit_preview(paths[len(paths) // 2], on_slice)
    if len(paths) >= _PROCESS_MIN_TASKS and _looks_compressed(paths[len(paths) // 2]):
        start_in_background()
    headers, skipped = scan_headers(paths)
    headers, duplicates = drop_duplicate_instances(headers)
    if not headers:
        raise LoadError(
            "no DICOM image in the given files" + (f" ({describe_skipped(skipped)})" if skipped else "")
        )
    plans: list[_Plan] = []
    for stack in build_stacks(headers):
        try:
            plans.append(_plan(stack))
        except Exception as exc:  # noqa: BLE001 - an odd stack must not cost the other series
            log.warning("stack of series %s not loadable: %s", stack.series_uid, exc)
            skipped += _skipped_stack(stack, f"cannot be shown ({type(exc).__name__}: {exc})")
    warnings = [str(s) for s in skipped] + duplicates
    if not plans:
        raise LoadError("no loadable image in the given files: " + describe_skipped(skipped))
    budget = (
        memory_budget_bytes if memory_budget_bytes is not None else psutil.virtual_memory().available // 2
    )
    needed = sum(p.nbytes for p in plans)
    if needed > budget:
        plans = _thin_videos(plans, budget)
        needed = sum(p.nbytes for p in plans)
    if needed > budget:
        raise MemoryBudgetError(f"series needs {needed / 2**20:.0f} MiB, budget is {budget / 2**20:.0f} MiB")
    volumes: list[Volume] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for plan in plans:
            index = len(volumes)  # the index this volume will have in LoadResult.volumes
            try:
                try:
                    _fill(plan, index, pool, on_slice)
                except RangeOverflow:
                    log.info("series %s: values exceed int16, reloading as int32", plan.stack.series_uid)
                    plan = _plan(plan.stack, wide=True)
                    _fill(plan, index, pool, on_slice)
            except DecodeError as exc:
                skipped += _skipped_stack(plan.stack, f"cannot be decoded ({exc})")
                warnings.append(f"series {plan.stack.series_uid}: {exc}; stack skipped")
                continue
            volume = _finish(plan)
            volumes.append(volume)
    for v in volumes:
        warnings.extend(str(w) for w in v.metadata.get("warnings", []))  # type: ignore[union-attr]
    if not volumes:
        raise LoadError("no volume could be decoded: " + "; ".join(warnings[:3]))
    for w in warnings:
        log.info("load: %s", w)
    return LoadResult(volumes, list(dict.fromkeys(warnings)), skipped)


def _skipped_stack(stack: Stack, reason: str) -> list[SkippedFile]:
    paths = dict.fromkeys(fr.header.path for fr in stack.frames)
    return [SkippedFile(p, "unreadable", reason) for p in paths]


def describe_skipped(skipped: Sequence[SkippedFile]) -> str:
    """The files left out of a load and why, in a line for the user (the first three named)."""
    text = "; ".join(str(s) for s in skipped[:3])
    return text + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")


def load_volume(paths: Sequence[str | Path], **kwargs: object) -> tuple[Volume, list[str]]:
    """The main volume (largest stack of the first series) and all warnings."""
    result = load_series(paths, **kwargs)  # type: ignore[arg-type]
    return result.volumes[0], result.warnings


@dataclass
class _Plan:
    stack: Stack
    volume: Volume
    nbytes: int
    checked: bool = False  # int16 output of a wider declared range: range-check every slice

    @property
    def is_video(self) -> bool:
        return is_video_syntax(self.stack.first.header.layout.transfer_syntax)


def _plan(stack: Stack, wide: bool = False, stride: int = 1) -> _Plan:
    """Allocate the volume of a stack (``wide``: int32 after an int16 overflow; ``stride``: keep
    every n-th frame of a video)."""
    if stride > 1:
        stack = Stack(
            stack.series_uid,
            stack.frames[::stride],
            stack.warnings
            + [
                f"video decoded keeping one frame in {stride} to fit the memory budget "
                f"({len(stack.frames[::stride])} of {len(stack.frames)} frames)"
            ],
        )
    first = stack.first
    layout = first.header.layout
    ds = first.header.ds
    n = len(stack.frames)
    checked = False
    if wide or has_modality_lut(ds):
        dtype = np.dtype(np.int32)
    else:
        dtype, checked = modality_dtype(layout, sorted({(f.slope, f.intercept) for f in stack.frames}))
    shape: tuple[int, ...] = (n, *first.header.image_shape)
    if layout.is_color:
        shape += (3,)
    voxels = np.zeros(shape, dtype=dtype)
    metadata = _metadata(stack)
    if stack.has_geometry:
        positions = np.stack([f.position for f in stack.frames])
        geom = analyse_positions(
            positions, first.row_dir, first.col_dir, first.pixel_spacing, nominal_slice_spacing(ds)
        )
        metadata["warnings"] = stack.warnings + geom.warnings
        metadata["geometry_corrected"] = geom.needs_resampling
        metadata["tilt_degrees"] = geom.tilt_degrees
        metadata["pixel_spacing_known"] = True
        metadata["pixel_spacing_source"] = SPACING_PIXEL
        metadata["_geometry"] = geom
        direction = np.column_stack([first.row_dir, first.col_dir, first.normal])
        spacing = (first.pixel_spacing[1], first.pixel_spacing[0], geom.slice_spacing)
        volume = Volume(voxels, spacing, tuple(float(x) for x in first.position), direction, None, metadata)
        extra = 0
        if geom.needs_resampling:
            extra = voxels.nbytes * 2  # resampled copy (possibly wider) + float work planes
    else:
        known, source, spacing_warnings = pixel_spacing_source(ds)
        spacing2 = known or (1.0, 1.0)
        metadata["pixel_spacing_known"] = known is not None
        metadata["pixel_spacing_source"] = source
        metadata["warnings"] = stack.warnings + spacing_warnings
        all_times = _frame_times(ds, layout.frames)
        times = [all_times[f.frame] for f in stack.frames] if all_times is not None else None
        volume = Volume(voxels, (spacing2[1], spacing2[0], 1.0), (0.0, 0.0, 0.0), np.eye(3), times, metadata)
        extra = 0
    return _Plan(stack, volume, voxels.nbytes + extra, checked)


def _thin_videos(plans: list[_Plan], budget: int) -> list[_Plan]:
    """Re-plan video stacks keeping every n-th frame so that all volumes fit ``budget`` (the
    other stacks are left whole: if they alone do not fit, the caller refuses the load)."""
    video_bytes = sum(p.nbytes for p in plans if p.is_video)
    room = budget - sum(p.nbytes for p in plans if not p.is_video)
    if not video_bytes or room <= 0:
        return plans
    stride = -(-video_bytes // room)
    while stride <= max(len(p.stack.frames) for p in plans if p.is_video):
        thinned = [_plan(p.stack, stride=stride) if p.is_video else p for p in plans]
        if sum(p.nbytes for p in thinned) <= budget:
            return thinned
        stride += 1
    return plans


def pixel_spacing_source(ds: object) -> tuple[tuple[float, float] | None, str | None, list[str]]:
    """Trustworthy in-plane spacing ``(row, column)`` mm of an image without patient geometry, where
    it came from (one of :data:`viewer.tools.SPACING_SOURCES`) and warnings for the user.

    Pixel Spacing first (calibrated to the patient where the modality says so), then Imager Pixel
    Spacing (at the detector: magnification not corrected, so measurements are labelled "at
    detector", PS3.3 C.8.11.4 / IHE), then the physical deltas of an ultrasound region (cm -> mm).
    Nominal Scanned Pixel Spacing (film digitiser) and everything else give ``None``: distances are
    then in pixels."""
    for key, source in (("PixelSpacing", SPACING_PIXEL), ("ImagerPixelSpacing", SPACING_IMAGER)):
        value = getattr(ds, key, None)
        try:
            spacing = (float(value[0]), float(value[1])) if value is not None and len(value) == 2 else None
        except (TypeError, ValueError):
            spacing = None
        if spacing is not None and spacing[0] > 0 and spacing[1] > 0:
            return spacing, source, []
    us = _ultrasound_region_spacing(ds)
    if us is not None:
        return us
    return None, None, ["no trustworthy pixel spacing in the file: distances and areas are in pixels"]


def _ultrasound_region_spacing(ds: object) -> tuple[tuple[float, float], str, list[str]] | None:
    """Spacing from the 2D (tissue) regions of the Sequence of Ultrasound Regions calibrated in cm."""
    deltas: list[tuple[float, float]] = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
        try:
            two_d = int(region.get("RegionSpatialFormat", 1) or 0) == 1
            in_cm = all(
                int(region.get(k, 0) or 0) == _US_UNITS_CM
                for k in ("PhysicalUnitsXDirection", "PhysicalUnitsYDirection")
            )
            dx, dy = abs(float(region.PhysicalDeltaX)) * 10.0, abs(float(region.PhysicalDeltaY)) * 10.0
        except (AttributeError, TypeError, ValueError):
            continue
        if two_d and in_cm and dx > 0 and dy > 0:
            deltas.append((dy, dx))
    if not deltas:
        return None
    warnings = []
    if any(abs(d[0] - deltas[0][0]) > 1e-6 or abs(d[1] - deltas[0][1]) > 1e-6 for d in deltas):
        warnings.append(
            f"{len(deltas)} ultrasound regions have different pixel sizes: measurements use "
            "the first region's calibration"
        )
    return deltas[0], SPACING_US, warnings


def _frame_times(ds: object, n: int) -> list[float] | None:
    vector = getattr(ds, "FrameTimeVector", None)
    if vector is not None and len(vector) == n:
        return [float(x) for x in np.cumsum([0.0] + [float(v) for v in vector[1:]])]
    frame_time = getattr(ds, "FrameTime", None)
    if frame_time is None and getattr(ds, "CineRate", None):
        frame_time = 1000.0 / float(ds.CineRate)  # type: ignore[attr-defined]
    if frame_time is None or n < 2:
        return None
    return [i * float(frame_time) for i in range(n)]


def _metadata(stack: Stack) -> dict[str, object]:
    ds = stack.first.header.ds
    windows = _file_windows(stack.frames[len(stack.frames) // 2])
    return {
        "modality": str(ds.get("Modality", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_number": ds.get("SeriesNumber"),
        "series_description": str(ds.get("SeriesDescription", "")),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "sop_instance_uids": [text_value(f.header.ds, "SOPInstanceUID") for f in stack.frames],
        "sources": [(str(f.header.path), f.frame) for f in stack.frames],
        "file_windows": windows,
        "slice_windows": [f.window for f in stack.frames],
        "photometric": stack.first.header.layout.photometric,
        "invert": stack.first.header.layout.photometric == "MONOCHROME1",
        "has_patient_geometry": stack.has_geometry,
        "rescale_type": _rescale_unit(stack.first.rescale_type, str(ds.get("Modality", ""))),
        "patient_orientation": [str(x) for x in (ds.get("PatientOrientation") or [])],
        "warnings": list(stack.warnings),
        "geometry_corrected": False,
        "tilt_degrees": 0.0,
    }


def _file_windows(frame: FrameRef) -> list[tuple[float, float, str]]:
    """The VOI windows ``(width, centre, explanation)`` of one frame: its own (Enhanced per-frame
    VOI) first, then every Window Center/Width pair of its instance."""
    ds = frame.header.ds
    windows: list[tuple[float, float, str]] = []
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    if frame.window is not None:
        windows.append((frame.window[0], frame.window[1], ""))
    if wc is not None and ww is not None:
        centres = list(wc) if hasattr(wc, "__len__") and not isinstance(wc, str) else [wc]
        widths = list(ww) if hasattr(ww, "__len__") and not isinstance(ww, str) else [ww]
        names = ds.get("WindowCenterWidthExplanation") or []
        names = [names] if isinstance(names, str) else list(names)
        for i, (c, w) in enumerate(zip(centres, widths)):
            try:
                entry = (float(w), float(c), str(names[i]) if i < len(names) else "")
            except (TypeError, ValueError):
                continue  # a malformed window is no reason to refuse the image
            if not windows or (windows[0][0], windows[0][1]) != entry[:2]:
                windows.append(entry)
    return windows


def _rescale_unit(rescale_type: str, modality: str) -> str:
    """Unit of the modality values: the frame's Rescale Type, "HU" for a CT that names none, and
    "" (no unit) for "US", which DICOM defines as *unspecified* (e.g. a CT perfusion map)."""
    if not rescale_type:
        return "HU" if modality == "CT" else ""
    return "" if rescale_type.upper() == "US" else rescale_type


def _decode_task(
    frames: list[tuple[int, FrameRef]], out: np.ndarray, dataset: object = None, checked: bool = False
) -> list[int]:
    """Decode frames (all of one instance) into ``out[k]``; returns the slice indices written.

    Native pixels are read straight from the file, greyscale JPEG Lossless / JPEG 2000 decoded
    without the GIL (:mod:`viewer.decode_gil_free`), everything else by pydicom (``dataset``: the
    instance already parsed in full)."""
    header = frames[0][1].header
    indices = sorted({fr.frame for _, fr in frames})
    stored: list[np.ndarray] | None = None
    if header.layout.native_fast_path and not has_modality_lut(header.ds):
        stored = [read_native_frame(header.path, header.layout, f) for f in indices]
    elif _gil_free(header):
        try:
            stored = decode_frames(header.path, header.layout, indices, header.ds)
        except GilFreeUnsuitable as exc:
            log.debug("%s: %s; decoding with pydicom", header.path.name, exc)
    if stored is None:
        ds = dataset if dataset is not None else read_dataset(header.path)
        stored = list(decode_with_pydicom(ds, None if header.layout.frames == 1 else indices))  # type: ignore[arg-type]
        dataset = ds
    _store(frames, dict(zip(indices, stored)), out, dataset, checked)
    return [k for k, _ in frames]


def _store(
    frames: list[tuple[int, FrameRef]],
    stored: dict[int, np.ndarray],
    out: np.ndarray,
    dataset: object = None,
    checked: bool = False,
) -> None:
    """Stored values of one instance's frames -> modality values in ``out[k]`` (a mosaic frame
    takes its tile; colour is reduced to 8 bits; Modality LUT or rescale otherwise)."""
    header = frames[0][1].header
    for k, fr in frames:
        arr = stored[fr.frame]
        if fr.tile is not None and header.mosaic is not None:
            arr = header.mosaic.tile(arr, fr.tile)
        if header.layout.is_color:
            np.copyto(out[k], colour_to_8bit(arr, header.layout.bits_stored), casting="unsafe")
        elif has_modality_lut(header.ds):
            lut_source = dataset if dataset is not None else header.ds
            np.copyto(out[k], apply_lut(arr, lut_source), casting="unsafe")  # type: ignore[arg-type]
        else:
            to_modality(arr, fr.slope, fr.intercept, out.dtype, out=out[k], checked=checked)


def _middle_out(n: int) -> list[int]:
    mid = n // 2
    order = [mid]
    for step in range(1, n):
        for k in (mid + step, mid - step):
            if 0 <= k < n:
                order.append(k)
        if len(order) >= n:
            break
    return order


def _fill_video(plan: _Plan, index: int, on_slice: SliceCallback | None) -> None:
    """Decode a video object frame by frame (sequential by nature) into the volume."""
    frames = plan.stack.frames
    voxels = plan.volume.voxels
    ds = read_dataset(frames[0].header.path)
    loaded = 0

    def kept(k: int) -> None:
        nonlocal loaded
        loaded += 1
        if on_slice is not None:
            on_slice(SliceEvent(index, k, voxels[k], plan.volume, loaded, len(frames)))

    times = decode_video(ds, voxels, {fr.frame: k for k, fr in enumerate(frames)}, kept)
    volume = plan.volume
    if loaded < len(frames):  # Number of Frames overstated the stream: keep what was decoded
        volume.voxels = voxels[:loaded]
        for key in ("sources", "sop_instance_uids"):
            volume.metadata[key] = volume.metadata[key][:loaded]  # type: ignore[index]
        volume.metadata["warnings"] = list(volume.metadata.get("warnings", [])) + [  # type: ignore[arg-type]
            f"the video holds {loaded} decodable frames, not the {len(frames)} its header declares"
        ]
        if volume.frame_start_times_ms is not None:
            volume.frame_start_times_ms = volume.frame_start_times_ms[:loaded]
    if volume.frame_start_times_ms is None and len(times) > 1:  # no Cine timing attributes: the stream's
        volume.frame_start_times_ms = [times[fr.frame] for fr in frames[:loaded]]
        volume.metadata["frame_timing_source"] = "video stream"


def _fill(plan: _Plan, index: int, pool: ThreadPoolExecutor, on_slice: SliceCallback | None) -> None:
    if plan.is_video:
        _fill_video(plan, index, on_slice)
        return
    frames = plan.stack.frames
    voxels = plan.volume.voxels
    tasks, shared = _tasks(frames, _middle_out(len(frames)))
    # Compressed files whose decoders hold the GIL go to worker processes; the first tasks
    # (middle slices) stay in this process so the first image does not wait for them.
    in_processes = [i >= _IN_PROCESS_HEAD and _process_decodable(t) for i, t in enumerate(tasks)]
    if sum(in_processes) < _PROCESS_MIN_TASKS:
        in_processes = [False] * len(tasks)
    futures: list[Future | None] = [None] * len(tasks)

    def here(i: int) -> None:
        in_processes[i] = False
        futures[i] = pool.submit(
            _decode_task, tasks[i], voxels, shared.get(tasks[i][0][1].header.path), plan.checked
        )

    for i in range(len(tasks)):  # first what this process decodes: it must not wait for the pool
        if not in_processes[i]:
            here(i)
    loaded = 0
    failed: dict[int, str] = {}
    started: ProcessPoolExecutor | None = None

    def consume(i: int) -> None:
        nonlocal loaded
        task, fut = tasks[i], futures[i]
        assert fut is not None
        try:
            if in_processes[i]:
                done = _stored_from_process(fut, task, voxels, plan.checked, started)
            else:
                done = fut.result()
        except RangeOverflow:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not cost the whole series
            failed.update((k, f"{fr.header.path.name}: {exc}") for k, fr in task)
            return
        for k in done:
            loaded += 1
            if on_slice is not None:
                on_slice(SliceEvent(index, k, voxels[k], plan.volume, loaded, len(frames)))

    try:
        head = min(_IN_PROCESS_HEAD, len(tasks))
        for i in range(head):  # the middle slices, decoded here, are shown before the pool is awaited
            consume(i)
        processes = started = decode_processes() if any(in_processes) else None
        for i in (i for i, remote in enumerate(in_processes) if remote):
            if processes is not None:
                try:
                    futures[i] = processes.submit(decode_file, str(tasks[i][0][1].header.path))
                    continue
                except (BrokenProcessPool, RuntimeError):  # a worker died earlier, or the pool shut down
                    _forget_processes(processes)
                    processes = None
            here(i)
        for i in range(head, len(tasks)):  # then outwards, in order
            consume(i)
    except BaseException:
        for fut in futures:
            if fut is not None:
                fut.cancel()
        raise
    if failed:
        _blank_failed_slices(plan, failed)


def _stored_from_process(
    fut: Future,
    task: list[tuple[int, FrameRef]],
    voxels: np.ndarray,
    checked: bool,
    processes: ProcessPoolExecutor | None,
) -> list[int]:
    """Store what a worker process decoded; if the pool broke (a worker was killed), forget it
    and decode the file here instead."""
    try:
        stored = fut.result()
    except BrokenProcessPool:
        _forget_processes(processes)
        return _decode_task(task, voxels, None, checked)
    _store(task, {0: stored[0]}, voxels, None, checked)
    return [k for k, _ in task]


def _tasks(
    frames: list[FrameRef], order: list[int]
) -> tuple[list[list[tuple[int, FrameRef]]], dict[Path, object]]:
    """Decode tasks in ``order``: one per single-frame file, every tile of a mosaic file in one,
    and chunks of a compressed multi-frame file (parsed once here, shared by its tasks)."""
    tasks: list[list[tuple[int, FrameRef]]] = []
    shared: dict[Path, object] = {}
    mosaics: dict[int, list[tuple[int, FrameRef]]] = {}
    current: list[tuple[int, FrameRef]] = []
    for k in order:
        fr = frames[k]
        multi_compressed = fr.header.layout.frames > 1 and not fr.header.layout.native_fast_path
        if multi_compressed:
            if fr.header.path not in shared:
                ds = read_dataset(fr.header.path)
                _ = ds.PixelData  # parse once here, not concurrently in the workers
                shared[fr.header.path] = ds
            chunk = fr.header.layout.frames if decodes_whole_file(fr.header.layout) else _CHUNK_FRAMES
            if current and (current[0][1].header is not fr.header or len(current) >= chunk):
                tasks.append(current)
                current = []
            current.append((k, fr))
            continue
        if current:
            tasks.append(current)
            current = []
        if fr.header.mosaic is not None:
            if id(fr.header) not in mosaics:
                mosaics[id(fr.header)] = []
                tasks.append(mosaics[id(fr.header)])
            mosaics[id(fr.header)].append((k, fr))
        else:
            tasks.append([(k, fr)])
    if current:
        tasks.append(current)
    return tasks, shared


def _looks_compressed(path: Path) -> bool:
    """Whether a file of the load holds a compressed single-frame image (a hint, read early)."""
    try:
        header = read_header(path)
    except DecodeError:
        return False
    return _process_decodable([(0, FrameRef(header, 0, None, None, None, None))])


def _gil_free(header: InstanceHeader) -> bool:
    """Single-frame greyscale JPEG Lossless / JPEG 2000: decoded in threads without the GIL."""
    return header.layout.frames == 1 and gil_free_decodable(header.layout)


def _process_decodable(task: list[tuple[int, FrameRef]]) -> bool:
    """A task worth a worker process: one compressed single-frame image (no mosaic, no video)."""
    header = task[0][1].header
    layout = header.layout
    return (
        len(task) == 1
        and layout.frames == 1
        and header.mosaic is None
        and not layout.native_fast_path
        and not has_modality_lut(header.ds)
        and not is_video_syntax(layout.transfer_syntax)
        and not _gil_free(header)
    )


def _blank_failed_slices(plan: _Plan, failed: dict[int, str]) -> None:
    """Show undecodable slices as the darkest value of the others and say so; all failed: error."""
    voxels = plan.volume.voxels
    if len(failed) == len(voxels):
        raise DecodeError(next(iter(failed.values())))
    good = np.ones(len(voxels), dtype=bool)
    good[list(failed)] = False
    voxels[~good] = voxels[good].min()
    first = failed[min(failed)]
    plan.volume.metadata["warnings"] = list(plan.volume.metadata.get("warnings", [])) + [  # type: ignore[arg-type]
        f"{len(failed)} slice(s) could not be decoded and are shown blank (first: {first})"
    ]


def _finish(plan: _Plan) -> Volume:
    volume = plan.volume
    geom = volume.metadata.pop("_geometry", None)
    if geom is None or not geom.needs_resampling:
        return volume
    first = plan.stack.first
    grid = resample_to_regular(
        volume.voxels, geom, np.asarray(volume.origin), first.row_dir, first.col_dir, first.pixel_spacing
    )
    metadata = dict(volume.metadata)
    # Slices were resampled: per-slice sources no longer map one to one; the acquired ones are
    # kept for viewer.sources (nearest acquired slice of a plane or point).
    metadata["slice_windows"] = []
    metadata["acquired_sop_instance_uids"] = metadata["sop_instance_uids"]
    metadata["acquired_sources"] = metadata["sources"]
    metadata["sources"] = []
    metadata["sop_instance_uids"] = []
    metadata["acquired_positions_mm"] = [float(x) for x in geom.normal_positions]
    return Volume(
        grid.voxels,
        grid.spacing,
        tuple(float(x) for x in grid.origin),
        grid.direction,
        volume.frame_start_times_ms,
        metadata,
    )


def _emit_preview(path: Path, on_slice: SliceCallback) -> None:
    """Decode one image from the middle of the list before anything else is read."""
    try:
        header: InstanceHeader = read_header(path)
        stack = build_stacks([header])[0]
        if is_video_syntax(header.layout.transfer_syntax):  # a video's first frame is the quick one
            plan = _plan(Stack(stack.series_uid, stack.frames[:1]))
            decode_video(read_dataset(path), plan.volume.voxels, {0: 0})
        else:
            fr = stack.frames[len(stack.frames) // 2]
            plan = _plan(Stack(stack.series_uid, [fr]))
            _decode_task([(0, fr)], plan.volume.voxels)
    except Exception as exc:  # noqa: BLE001 - the preview is a courtesy; the load reports problems
        log.debug("preview skipped: %s", exc)
        return
    on_slice(SliceEvent(-1, 0, plan.volume.voxels[0], None, 0, 0, preview=True))
