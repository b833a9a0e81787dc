"""The GIL-free JPEG Lossless / JPEG 2000 path gives exactly pydicom's stored values, on every such
sample pydicom ships and on signed data written by DCMTK (its speed: bench/load.py)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

from viewer.decode import DecodeError, decode_with_pydicom, pixel_layout, read_dataset
from viewer.decode_gil_free import decode_frames, gil_free_decodable
from viewer.loader import load_series

pytest.importorskip("imagecodecs")


def sample_files() -> list[Path]:
    folders = [Path(pydicom.data.__file__).parent / "test_files"]
    extra = get_testdata_file("693_J2KR.dcm", download=False)
    if extra is not None:
        folders.append(Path(extra).parent)
    return sorted(p for folder in folders for p in folder.rglob("*.dcm"))


def test_equals_pydicom_on_every_greyscale_sample() -> None:
    compared, signed = [], 0
    for path in sample_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                header = pydicom.dcmread(path, defer_size=2048)
                layout = pixel_layout(header)
            except Exception:  # noqa: BLE001, S112 - not an image, or nothing pydicom reads
                continue
            if not gil_free_decodable(layout):
                continue
            try:
                expected = decode_with_pydicom(read_dataset(path))
            except DecodeError:  # a sample of a broken codestream: nothing to compare with
                continue
        ours = decode_frames(path, layout, list(range(layout.frames)), header)
        assert len(ours) == len(expected), path.name
        for got, want in zip(ours, expected):
            assert got.dtype == want.dtype and np.array_equal(got, want), path.name
        compared.append(path.name)
        signed += layout.signed
    # JPEG Lossless SV1 and JPEG 2000 (lossless and lossy), signed and unsigned, 8 to 16 bits,
    # a multi-frame, and a codestream whose sign disagrees with Pixel Representation
    assert len(compared) >= 12 and signed >= 4, compared


def signed_image(folder: Path, bits_stored: int) -> Path:
    rng = np.random.default_rng(bits_stored)
    y, x = np.mgrid[0:80, 0:72]
    low, high = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    pixels = np.clip((x * 53 - y * 41 + rng.normal(0, 200, x.shape)), low, high).astype(np.int16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 1
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / f"signed{bits_stored}.dcm", enforce_file_format=True)
    return folder / f"signed{bits_stored}.dcm"


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_signed_jpeg_lossless_and_j2k_give_the_native_values(tmp_path: Path, bits_stored: int) -> None:
    native = signed_image(tmp_path, bits_stored)
    expected = pydicom.dcmread(native).pixel_array
    dcmcjpeg = shutil.which("dcmcjpeg")
    compressed = []
    if dcmcjpeg:
        subprocess.run([dcmcjpeg, "+e1", str(native), str(tmp_path / "ll.dcm")], check=True)  # SV1
        compressed.append(tmp_path / "ll.dcm")
    ds = pydicom.dcmread(native)
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    ds.save_as(tmp_path / "j2k.dcm")
    compressed.append(tmp_path / "j2k.dcm")
    for path in compressed:
        header = pydicom.dcmread(path, defer_size=2048)
        layout = pixel_layout(header)
        assert gil_free_decodable(layout)
        (got,) = decode_frames(path, layout, [0], header)
        assert got.dtype == np.int16 and np.array_equal(got, expected), path.name
        assert np.array_equal(load_series([path]).volumes[0].voxels[0], expected), path.name
