"""DICOM Segmentations (binary, 1-bit included, and fractional) as overlays on a loaded volume.

The SEG is read with highdicom; every segment is sampled (nearest neighbour) onto the grid of the
referenced series' :class:`~viewer.volume.Volume`, so an overlay is just another volume: any plane,
slab or oblique view of the image can cut the same plane through it, and it lands on the voxels
the segmentation's own geometry names, whatever the two grids' order or orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from viewer.object_kinds import object_kind
from viewer.volume import Volume

FALLBACK_COLOURS = (
    (230, 60, 60),
    (60, 200, 90),
    (70, 130, 240),
    (240, 200, 50),
    (200, 80, 220),
    (60, 210, 220),
)


@dataclass(frozen=True)
class SegmentInfo:
    number: int
    label: str
    colour: tuple[int, int, int]  # sRGB 0..255


@dataclass
class SegOverlay:
    segments: list[SegmentInfo]
    masks: np.ndarray  # (segments, k, j, i) float32 in 0..1 on the image volume's grid
    fractional: bool
    referenced_series_uid: str

    def mask(self, number: int) -> np.ndarray:
        """The [k, j, i] mask of one segment (by its segment number)."""
        index = [s.number for s in self.segments].index(number)
        return self.masks[index]


def lab_to_rgb(lab: tuple[int, int, int]) -> tuple[int, int, int]:
    """DICOM's scaled CIELab (0..65535 each; D65 white) to sRGB 0..255."""
    lightness, a, b = lab[0] / 65535 * 100, lab[1] / 65535 * 255 - 128, lab[2] / 65535 * 255 - 128
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(t: float) -> float:
        return t**3 if t > 6 / 29 else 3 * (6 / 29) ** 2 * (t - 4 / 29)

    xyz = np.array([0.95047 * inverse(fx), inverse(fy), 1.08883 * inverse(fz)])
    linear = (
        np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]) @ xyz
    )
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return tuple(int(round(float(c) * 255)) for c in np.clip(srgb, 0, 1))  # type: ignore[return-value]


def _segment_infos(seg) -> list[SegmentInfo]:
    infos = []
    for position, number in enumerate(seg.segment_numbers):
        description = seg.get_segment_description(number)
        lab = description.get("RecommendedDisplayCIELabValue")
        colour = (
            lab_to_rgb(tuple(int(v) for v in lab))
            if lab
            else FALLBACK_COLOURS[position % len(FALLBACK_COLOURS)]
        )
        infos.append(SegmentInfo(int(number), str(description.SegmentLabel), colour))
    return infos


def _referenced_series(ds: Dataset) -> str:
    for series in ds.get("ReferencedSeriesSequence", []):
        return str(series.SeriesInstanceUID)
    return ""


def seg_overlay(ds: Dataset, volume: Volume) -> SegOverlay:
    """Every segment of ``ds`` sampled onto ``volume``'s voxels (empty where the SEG has no frame)."""
    import highdicom as hd

    if object_kind(str(ds.get("SOPClassUID", ""))) != "seg":
        raise ValueError("not a DICOM Segmentation")
    seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    fractional = str(seg.segmentation_type.value) == "FRACTIONAL"
    segments = _segment_infos(seg)
    seg_volume = seg.get_volume(combine_segments=False, rescale_fractional=True, dtype=np.float32)
    array = np.asarray(seg_volume.array, dtype=np.float32)  # (slices, rows, cols, segments)
    if array.ndim == 3:
        array = array[..., None]
    to_seg_index = np.linalg.inv(np.asarray(seg_volume.affine, dtype=np.float64))
    shape = array.shape[:3]
    i_count, j_count, k_count = volume.shape_ijk
    masks = np.zeros((len(segments), k_count, j_count, i_count), dtype=np.float32)
    jj, ii = np.meshgrid(np.arange(j_count), np.arange(i_count), indexing="ij")
    for k in _slices_touching(volume, seg_volume.affine, shape):
        ijk = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).reshape(-1, 3)
        lps = volume.index_to_lps(ijk)
        idx = np.rint((np.c_[lps, np.ones(len(lps))] @ to_seg_index.T)[:, :3]).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
        if not inside.any():
            continue
        values = np.zeros((len(idx), array.shape[3]), dtype=np.float32)
        values[inside] = array[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
        masks[:, k] = values.T.reshape(len(segments), j_count, i_count)
    return SegOverlay(segments, masks, fractional, _referenced_series(ds))


def _slices_touching(volume: Volume, affine: np.ndarray, shape: tuple[int, int, int]) -> range:
    """The image volume's slice indices that the SEG's extent reaches (with half a slice to spare)."""
    corners = np.array([[s, r, c, 1.0] for s in (-0.5, shape[0] - 0.5) for r in (-0.5, shape[1] - 0.5)
                        for c in (-0.5, shape[2] - 0.5)])  # fmt: skip
    lps = (corners @ np.asarray(affine, dtype=np.float64).T)[:, :3]
    k = volume.lps_to_index(lps)[:, 2]
    first, last = int(np.floor(k.min())), int(np.ceil(k.max()))
    return range(max(first, 0), min(last, volume.shape_ijk[2] - 1) + 1)
