"""DICOM objects for the archive/listener tests: phantoms as Part-10 bytes and real sample files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicom_net.synthetic import SeriesGeometry, ct_series


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def part10_as_is(ds: Dataset) -> bytes:
    """Part-10 bytes with the file meta exactly as set (pydicom would otherwise fix it up)."""
    ds.preamble = b"\0" * 128
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def small_ct(slices: int = 4, rows: int = 32, **kw: object) -> list[Dataset]:
    geometry = SeriesGeometry(rows=rows, columns=rows, slices=slices, pixel_spacing=(8.0, 8.0))
    return list(ct_series(geometry, **kw))


def sample_file(name: str) -> Path:
    """A file from pydicom's own test files or the offline ``pydicom-data`` package."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"sample {name} is not installed (pydicom-data)")
    return Path(path)


# Real objects covering the storage classes and transfer syntaxes the listener must take.
REAL_SAMPLES = (
    "color3d_jpeg_baseline.dcm",  # US multi-frame cine, 120 frames, JPEG baseline
    "eCT_Supplemental.dcm",  # Enhanced CT, multi-frame
    "emri_small_jpeg_2k_lossless.dcm",  # Enhanced MR, JPEG 2000 lossless
    "emri_small_big_endian.dcm",  # Enhanced MR, explicit big endian
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
    "MR_small_RLE.dcm",  # RLE lossless
    "image_dfl.dcm",  # deflated explicit VR little endian
    "CT_small.dcm",  # plain CT, explicit VR little endian
    "waveform_ecg.dcm",  # non-image storage class (ECG waveform)
    "liver.dcm",  # segmentation, 1-bit pixels
)
