"""Real-world pixel formats: 12-bit lossy JPEG, 32-bit colour, per-slice windows, Siemens mosaics."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

from app.assistant.ai_inputs import AIView, resolve_window
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_series
from viewer.presets import default_window
from viewer.reslice import value_range


def dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"DCMTK {tool} not installed")
    return path


def twelve_bit_image(folder: Path) -> Path:
    """A 12-bit greyscale image with fine texture (lossy JPEG decoders differ on such detail)."""
    rng = np.random.default_rng(12)
    y, x = np.mgrid[0:96, 0:112]
    pixels = (2048 + 1500 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 120, x.shape)).clip(0, 4095)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(folder / "native.dcm", enforce_file_format=True)
    return folder / "native.dcm"


def test_12_bit_lossy_jpeg_decodes_as_dcmtk_does(tmp_path: Path) -> None:
    native = twelve_bit_image(tmp_path)
    jpeg, reference = tmp_path / "jpeg12.dcm", tmp_path / "dcmdjpeg.dcm"
    subprocess.run([dcmtk("dcmcjpeg"), "+ee", str(native), str(jpeg)], check=True)  # Process 2/4
    subprocess.run([dcmtk("dcmdjpeg"), str(jpeg), str(reference)], check=True)
    assert pydicom.dcmread(jpeg).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"
    expected = pydicom.dcmread(reference).pixel_array
    assert not np.array_equal(expected, pydicom.dcmread(native).pixel_array)  # really lossy
    result = load_series([jpeg])
    assert not result.skipped
    assert np.array_equal(result.volumes[0].voxels[0], expected)


def test_32_and_16_bit_rgb_keep_their_colours() -> None:
    for name, ref in (("SC_rgb_32bit.dcm", "SC_rgb_rle_32bit.dcm"), ("SC_rgb_16bit.dcm", "SC_rgb.dcm")):
        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"{name} not installed")
        rgb = load_series([path]).volumes[0].voxels[0]
        assert rgb.dtype == np.uint8
        assert rgb[0, 0].tolist() == [255, 0, 0]  # stored 0xFFFFFFFF / 0xFFFF, 0, 0: pure red
        assert rgb[50, 50].tolist() == [128, 128, 255]  # stored 0x80808080 / 0x8080: light blue
        if name.endswith("32bit.dcm"):
            assert np.array_equal(
                rgb, load_series([get_testdata_file(ref, download=False)]).volumes[0].voxels[0]
            )
        else:  # the 8-bit version of the same picture
            assert np.array_equal(
                rgb, load_series([get_testdata_file(ref, download=False)]).volumes[0].voxels[0]
            )


def test_series_opens_with_the_middle_slice_window_and_the_ai_gets_it(tmp_path: Path) -> None:
    """Siemens MR stores a window per slice; the first can be tiny (W 8 / L 4 on a noise slice)."""
    datasets = sorted(
        ct_series(SeriesGeometry(rows=32, columns=32, slices=5)),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    windows = [(8, 4), (600, 300), (1293, 647), (900, 450), (700, 350)]
    for ds, (width, centre) in zip(datasets, windows):
        ds.Modality, ds.WindowWidth, ds.WindowCenter = "MR", width, centre
    write_datasets(datasets[::-1], tmp_path)
    volume = load_series([tmp_path]).volumes[0]
    assert volume.metadata["file_windows"][0][:2] == (1293.0, 647.0)
    assert volume.metadata["slice_windows"] == [(float(w), float(c)) for w, c in windows]
    preset = default_window(volume.metadata, value_range(volume))
    assert (preset.window, preset.level) == (1293.0, 647.0)
    assert resolve_window(volume, AIView()) == (1293.0, 647.0)


def csa2_header(fields: dict[str, list[str]]) -> bytes:
    """A Siemens CSA2 ("SV10") header with text items."""
    out = b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(fields), 77)
    for name, values in fields.items():
        out += name.encode().ljust(64, b"\0") + struct.pack(
            "<i4siii", len(values), b"DS\0\0", 3, len(values), 77
        )
        for value in values:
            data = value.encode() + b"\0"
            out += struct.pack("<4i", len(data), len(data), 77, len(data)) + data.ljust(
                -(-len(data) // 4) * 4, b"\0"
            )
    return out


def write_mosaic(slices: list[Dataset], path: Path, *, descending: bool) -> None:
    """Tile ``slices`` (sorted along row x column) into one Siemens mosaic; ``descending``: the
    tiles run against row x column (SliceNormalVector reversed), as on head-to-feet acquisitions."""
    tiles = slices[::-1] if descending else slices
    per_row = int(np.ceil(np.sqrt(len(tiles))))
    rows, cols = tiles[0].Rows, tiles[0].Columns
    mosaic = np.zeros((rows * per_row, cols * per_row), dtype=np.uint16)
    for k, ds in enumerate(tiles):
        r, c = divmod(k, per_row)
        mosaic[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = ds.pixel_array
    first = tiles[0]
    row_dir, col_dir = (
        np.array(first.ImageOrientationPatient[:3]),
        np.array(first.ImageOrientationPatient[3:]),
    )
    dr, dc = (float(v) for v in first.PixelSpacing)
    corner = (
        np.array(first.ImagePositionPatient, dtype=float)
        - row_dir * dc * (cols * per_row - cols) / 2
        - col_dir * dr * (rows * per_row - rows) / 2
    )
    normal = np.cross(row_dir, col_dir) * (-1 if descending else 1)
    ds = pydicom.dcmread(first.filename)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
    ds.SpacingBetweenSlices = float(
        np.linalg.norm(np.subtract(slices[1].ImagePositionPatient, slices[0].ImagePositionPatient))
    )
    ds.Rows, ds.Columns = mosaic.shape
    ds.PixelData = mosaic.tobytes()
    csa = csa2_header(
        {
            "NumberOfImagesInMosaic": [str(len(tiles))],
            "SliceNormalVector": [f"{v:.8f}" for v in normal],
            "EchoLinePosition": [],
        }
    )
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", csa)
    ds.save_as(path)


@pytest.mark.parametrize("descending", [False, True])
def test_siemens_mosaic_unpacks_into_slices_with_their_geometry(tmp_path: Path, descending: bool) -> None:
    oblique = (0.8660254, 0.5, 0.0, 0.0, 0.0, -1.0)  # coronal turned 30 degrees about the feet-head axis
    geometry = SeriesGeometry(
        rows=16, columns=20, pixel_spacing=(3.0, 2.5), orientation=oblique, slices=7, slice_step=4.0
    )
    files = write_datasets(ct_series(geometry), tmp_path / "slices")
    slices = sorted(
        (pydicom.dcmread(f) for f in files),
        key=lambda d: float(np.dot(d.ImagePositionPatient, geometry.normal())),
    )
    truth = load_series(files).volumes[0]
    write_mosaic(slices, tmp_path / "mosaic.dcm", descending=descending)
    result = load_series([tmp_path / "mosaic.dcm"])
    (volume,) = result.volumes
    assert volume.voxels.shape == truth.voxels.shape == (7, 16, 20)
    assert np.array_equal(volume.voxels, truth.voxels)
    assert np.allclose(volume.origin, truth.origin, atol=1e-4)
    assert np.allclose(volume.spacing, truth.spacing, atol=1e-6)
    assert np.allclose(volume.direction, truth.direction, atol=1e-6)
    assert not volume.metadata["geometry_corrected"]


def test_real_siemens_diffusion_mosaic_matches_nibabel(tmp_path: Path) -> None:
    """nibabel's test data holds a real Siemens DWI mosaic (48 slices of 128², 3 mm); its
    MosaicWrapper is an independent implementation of the same geometry."""
    import gzip

    dicomwrappers = pytest.importorskip("nibabel.nicom.dicomwrappers")  # warns: "highly experimental"
    packed = Path(dicomwrappers.__file__).parent / "tests" / "data" / "siemens_dwi_1000.dcm.gz"
    if not packed.exists():
        pytest.skip("nibabel's test data is not installed")
    path = tmp_path / "dwi.dcm"
    path.write_bytes(gzip.decompress(packed.read_bytes()))
    wrapper = dicomwrappers.wrapper_from_file(str(path))
    assert wrapper.n_mosaic == 48
    (volume,) = load_series([path]).volumes
    assert volume.voxels.shape == (48, 128, 128)
    assert np.array_equal(volume.voxels, np.asarray(wrapper.get_data()).transpose(2, 0, 1))
    # nibabel's affine maps (row, column, slice) indices to LPS mm
    rng = np.random.default_rng(3)
    rcs = np.column_stack([rng.uniform(0, 127, 20), rng.uniform(0, 127, 20), rng.uniform(0, 47, 20)])
    theirs = (wrapper.affine @ np.column_stack([rcs, np.ones(20)]).T).T[:, :3]
    ours = volume.index_to_lps(rcs[:, [1, 0, 2]])
    assert np.max(np.abs(ours - theirs)) < 1e-3  # mm


def test_multi_frame_12_bit_lossy_jpeg_decodes_as_dcmtk_does(tmp_path: Path) -> None:
    """Old X-ray angiography: 12-bit lossy JPEG cines (every frame, in order)."""
    ds = pydicom.dcmread(twelve_bit_image(tmp_path))
    frames = np.stack([np.roll(ds.pixel_array, 7 * i, axis=1) for i in range(20)])
    ds.NumberOfFrames, ds.PixelData = len(frames), frames.tobytes()
    ds.save_as(tmp_path / "cine.dcm")
    jpeg, reference = tmp_path / "cine12.dcm", tmp_path / "cine_dcmdjpeg.dcm"
    subprocess.run([dcmtk("dcmcjpeg"), "+ee", str(tmp_path / "cine.dcm"), str(jpeg)], check=True)
    subprocess.run([dcmtk("dcmdjpeg"), str(jpeg), str(reference)], check=True)
    expected = pydicom.dcmread(reference).pixel_array
    (volume,) = load_series([jpeg]).volumes
    assert volume.voxels.shape == expected.shape == (20, 96, 112)
    assert np.array_equal(volume.voxels, expected)
