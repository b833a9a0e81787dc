"""Generated DICOM studies with known geometry: the demo study, test phantoms and benchmark data.

Every pixel of a generated CT is the value of one analytic function of the LPS patient coordinate
of that pixel's centre, so a marker placed at a known patient position appears at a computable
voxel whatever the orientation, slice order, spacing or gantry tilt of the series.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

HU_AIR = -1000
HU_SOFT_TISSUE = 40
HU_BONE = 700


@dataclass(frozen=True)
class Marker:
    """A sphere of constant value at an LPS position (mm)."""

    lps: tuple[float, float, float]
    radius_mm: float
    value: float


# Asymmetric on purpose: one marker each on the patient's left, anterior and head side, so a
# flip of any axis moves a marker to a place where the tests notice it.
DEFAULT_MARKERS: tuple[Marker, ...] = (
    Marker((60.0, 0.0, 0.0), 8.0, 1500.0),  # patient left (+x in LPS)
    Marker((0.0, -50.0, 0.0), 6.0, 1200.0),  # anterior (-y in LPS)
    Marker((0.0, 0.0, 40.0), 7.0, 1000.0),  # head (+z in LPS)
)


def ct_phantom_hu(points: np.ndarray, markers: Sequence[Marker] = DEFAULT_MARKERS) -> np.ndarray:
    """HU of the analytic body phantom at LPS points of shape (..., 3).

    An elliptic soft-tissue body (semi-axes 150 mm L-R, 100 mm A-P) with a bone ring near its
    border, air outside, and the given markers painted on top.
    """
    x, y = points[..., 0], points[..., 1]
    r = (x / 150.0) ** 2 + (y / 100.0) ** 2
    hu = np.full(points.shape[:-1], HU_AIR, dtype=np.float32)
    hu[r <= 1.0] = HU_SOFT_TISSUE
    hu[(r > 0.80) & (r <= 0.90)] = HU_BONE
    for m in markers:
        d2 = np.sum((points - np.asarray(m.lps, dtype=np.float32)) ** 2, axis=-1)
        hu[d2 <= m.radius_mm**2] = m.value
    return hu


@dataclass
class SeriesGeometry:
    """Geometry of one generated series, all in LPS millimetres.

    ``positions`` are the Image Position (Patient) of the slices in file order; leave it empty to
    get ``slices`` positions spaced ``slice_step`` apart along the slice normal (or along
    ``step_vector`` when given, which makes a gantry-tilted series if it is not along the normal).
    """

    rows: int = 128
    columns: int = 128
    pixel_spacing: tuple[float, float] = (2.0, 2.0)  # (row spacing, column spacing)
    orientation: tuple[float, ...] = AXIAL
    slices: int = 64
    slice_step: float = 2.5
    step_vector: tuple[float, float, float] | None = None
    positions: list[tuple[float, float, float]] = field(default_factory=list)
    slice_thickness: float | None = None
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def row_dir(self) -> np.ndarray:
        return np.asarray(self.orientation[:3], dtype=np.float64)

    def col_dir(self) -> np.ndarray:
        return np.asarray(self.orientation[3:], dtype=np.float64)

    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir(), self.col_dir())

    def slice_positions(self) -> list[np.ndarray]:
        """IPP of every slice in file order."""
        if self.positions:
            return [np.asarray(p, dtype=np.float64) for p in self.positions]
        step = (
            np.asarray(self.step_vector, dtype=np.float64)
            if self.step_vector is not None
            else self.normal() * self.slice_step
        )
        dr, dc = self.pixel_spacing
        half_plane = self.row_dir() * dc * (self.columns - 1) / 2 + self.col_dir() * dr * (self.rows - 1) / 2
        first = np.asarray(self.centre) - half_plane - step * (self.slices - 1) / 2
        return [first + step * i for i in range(self.slices)]

    def pixel_lps(self, ipp: np.ndarray) -> np.ndarray:
        """LPS centre of every pixel of a slice at ``ipp``: shape (rows, columns, 3)."""
        dr, dc = self.pixel_spacing
        cols = np.arange(self.columns)[None, :, None] * dc * self.row_dir()
        rows = np.arange(self.rows)[:, None, None] * dr * self.col_dir()
        return ipp[None, None, :] + cols + rows


def _base_dataset(
    sop_class: str, modality: str, patient: dict[str, str], study_uid: str, series_uid: str
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient.get("name", "PHANTOM^CT")
    ds.PatientID = patient.get("id", "PH0001")
    ds.PatientBirthDate = patient.get("birth_date", "19700101")
    ds.PatientSex = patient.get("sex", "O")
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    today = _dt.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = patient.get("study_date", today)
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = patient.get("accession", "ACC0001")
    ds.ReferringPhysicianName = patient.get("referring", "REFERRER^DEMO")
    ds.StudyDescription = patient.get("study_description", "Generated phantom study")
    ds.Modality = modality
    ds.Manufacturer = "Hulu-Med Workstation phantom generator"
    return ds


def _set_uint16_or_int16_pixels(ds: Dataset, pixels: np.ndarray, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()


def ct_series(
    geometry: SeriesGeometry | None = None,
    *,
    hu: Callable[[np.ndarray], np.ndarray] = ct_phantom_hu,
    patient: dict[str, str] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "Phantom CT",
    frame_of_reference_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, -1024.0),
    gantry_tilt: float | None = None,
) -> Iterator[Dataset]:
    """Yield the CT slices of a phantom, one Dataset per slice in file order.

    Stored values are ``(HU - intercept) / slope`` as unsigned 16-bit, so the viewer must apply
    the rescale to get HU back.
    """
    g = geometry or SeriesGeometry()
    patient = patient or {}
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    slope, intercept = rescale
    thickness = g.slice_thickness if g.slice_thickness is not None else abs(g.slice_step)
    for index, ipp in enumerate(g.slice_positions()):
        ds = _base_dataset(CTImageStorage, "CT", patient, study_uid, series_uid)
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = for_uid
        ds.BodyPartExamined = "CHEST"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in g.orientation]
        ds.PixelSpacing = [float(g.pixel_spacing[0]), float(g.pixel_spacing[1])]
        ds.SliceThickness = float(thickness)
        ds.SliceLocation = round(float(np.dot(ipp, g.normal())), 6)
        if gantry_tilt is not None:
            ds.GantryDetectorTilt = float(gantry_tilt)
        ds.Rows, ds.Columns = g.rows, g.columns
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.KVP = 120
        stored = np.clip(np.rint((hu(g.pixel_lps(ipp)) - intercept) / slope), 0, 65535)
        _set_uint16_or_int16_pixels(ds, stored, signed=False)
        yield ds


def radiograph(
    *,
    rows: int = 1024,
    columns: int = 832,
    spacing: float = 0.3,
    patient: dict[str, str] | None = None,
    study_uid: str | None = None,
    series_number: int = 2,
) -> Dataset:
    """A chest-radiograph-like DX image (PA view) with an 'L' side marker on the patient's left.

    Image columns run towards the patient's left (Patient Orientation ``L\\F``), so the marker is
    on the image's right, as radiologists read a PA film.
    """
    ds = _base_dataset(
        DigitalXRayImageStorageForPresentation,
        "DX",
        patient or {},
        study_uid or generate_uid(),
        generate_uid(),
    )
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Phantom chest PA"
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = rows, columns
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    cy, cx = rows * 0.5, columns * 0.5
    body = ((xx - cx) / (columns * 0.42)) ** 2 + ((yy - cy) / (rows * 0.48)) ** 2 <= 1.0
    lungs = (
        ((np.abs(xx - cx) - columns * 0.18) / (columns * 0.13)) ** 2 + ((yy - cy * 0.95) / (rows * 0.3)) ** 2
    ) <= 1
    img = np.full((rows, columns), 300.0, dtype=np.float32)
    img[body] = 2600.0
    img[lungs] = 900.0
    # side marker: a bright block top-right (patient's left on a PA image)
    img[int(rows * 0.05) : int(rows * 0.12), int(columns * 0.85) : int(columns * 0.93)] = 4000.0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = np.clip(img, 0, 4095).astype("<u2").tobytes()
    return ds


def ultrasound_cine(
    *,
    frames: int = 60,
    rows: int = 240,
    columns: int = 320,
    frame_time_ms: float = 40.0,
    patient: dict[str, str] | None = None,
    study_uid: str | None = None,
    series_number: int = 3,
) -> Dataset:
    """A multi-frame RGB ultrasound cine: a bright disc that moves left to right over the frames.

    Frame ``i`` has the disc centre at column ``columns * (0.2 + 0.6 * i / (frames - 1))`` and
    the frame number is encoded in the red channel of pixel (0, 0), so cine tests can tell frames
    apart exactly.
    """
    ds = _base_dataset(
        UltrasoundMultiFrameImageStorage, "US", patient or {}, study_uid or generate_uid(), generate_uid()
    )
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Phantom US cine"
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "ABDOMEN"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    ds.FrameTime = frame_time_ms
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.CineRate = int(round(1000.0 / frame_time_ms))
    ds.RecommendedDisplayFrameRate = int(round(1000.0 / frame_time_ms))
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    out = np.zeros((frames, rows, columns, 3), dtype=np.uint8)
    for i in range(frames):
        cx = columns * (0.2 + 0.6 * i / max(frames - 1, 1))
        disc = (xx - cx) ** 2 + (yy - rows / 2) ** 2 <= (rows * 0.15) ** 2
        speckle = ((xx * 7 + yy * 13 + i * 3) % 23).astype(np.uint8) * 2
        out[i, ..., 0] = speckle
        out[i, ..., 1] = speckle
        out[i, ..., 2] = speckle
        out[i][disc] = (220, 220, 220)
        out[i, 0, 0, 0] = i % 256
    ds.PixelData = out.tobytes()
    return ds


@dataclass(frozen=True)
class DemoStudy:
    study_uid: str
    files: list[Path]


def write_datasets(datasets: Iterator[Dataset] | Sequence[Dataset], folder: Path) -> list[Path]:
    """Write datasets as Part-10 files named by SOP Instance UID; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def demo_study(folder: Path, *, ct_slices: int = 120, ct_matrix: int = 256) -> DemoStudy:
    """Write the demo study: a CT volume, a chest radiograph and an ultrasound cine."""
    patient = {
        "name": "DEMO^PATIENT",
        "id": "DEMO0001",
        "birth_date": "19650412",
        "sex": "F",
        "accession": "DEMO-ACC-1",
        "study_description": "Demo study (generated phantom)",
    }
    study_uid = generate_uid()
    geometry = SeriesGeometry(
        rows=ct_matrix,
        columns=ct_matrix,
        pixel_spacing=(320 / ct_matrix, 320 / ct_matrix),
        slices=ct_slices,
        slice_step=1.5,
    )
    files = write_datasets(
        ct_series(geometry, patient=patient, study_uid=study_uid, series_description="Phantom CT chest"),
        folder / "ct",
    )
    files += write_datasets([radiograph(patient=patient, study_uid=study_uid)], folder / "dx")
    files += write_datasets([ultrasound_cine(patient=patient, study_uid=study_uid)], folder / "us")
    return DemoStudy(study_uid, files)
