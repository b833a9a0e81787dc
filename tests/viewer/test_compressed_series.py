"""Compressed series: the same volume as the uncompressed series whether decoded without the GIL in
threads (JPEG 2000, JPEG Lossless) or by the worker processes (JPEG-LS, RLE); a slice whose
codestream is broken is shown blank with a warning, the rest intact; killed workers cost nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_series

GEOMETRY = SeriesGeometry(rows=64, columns=48, slices=16, slice_step=1.5)


@pytest.fixture(autouse=True)
def worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the decoding processes even on a one-CPU machine (read when the pool starts)."""
    monkeypatch.setenv("HULU_DECODE_PROCESSES", "2")


def compressed_copy(files: list[Path], folder: Path, syntax: str) -> list[Path]:
    folder.mkdir()
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(folder / f.name)
        out.append(folder / f.name)
    return out


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless])
def test_compressed_series_equals_the_native_one(tmp_path: Path, syntax: str) -> None:
    native = write_datasets(ct_series(GEOMETRY), tmp_path / "native")
    expected = load_series(native).volumes[0]
    result = load_series(compressed_copy(native, tmp_path / "compressed", syntax))
    (volume,) = result.volumes
    assert not result.warnings
    assert volume.voxels.dtype == expected.voxels.dtype
    assert np.array_equal(volume.voxels, expected.voxels)
    assert volume.origin == expected.origin and volume.spacing == expected.spacing
    assert np.array_equal(volume.direction, expected.direction)
    assert volume.metadata["sop_instance_uids"] == expected.metadata["sop_instance_uids"]


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless])
def test_a_broken_codestream_blanks_its_slice_only(tmp_path: Path, syntax: str) -> None:
    native = write_datasets(ct_series(GEOMETRY), tmp_path / "native")
    expected = load_series(native).volumes[0].voxels
    files = compressed_copy(native, tmp_path / "compressed", syntax)
    first = min(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))  # decoded last
    ds = pydicom.dcmread(first)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([bytes(len(frame))])  # no codestream markers left: undecodable
    ds.save_as(first)
    result = load_series(files)
    voxels = result.volumes[0].voxels
    assert np.array_equal(voxels[1:], expected[1:])
    assert np.all(voxels[0] == expected[1:].min())  # blank: the darkest value of the other slices
    assert any("1 slice(s) could not be decoded" in w and first.name in w for w in result.warnings)


def test_killed_decoding_processes_do_not_cost_a_slice(tmp_path: Path) -> None:
    """A decoding worker killed between loads (out-of-memory killer, user): the next load decodes
    everything anyway and a fresh pool serves the one after."""
    import contextlib
    import os
    import signal

    from viewer import decode_processes

    native = write_datasets(ct_series(GEOMETRY), tmp_path / "native")
    expected = load_series(native).volumes[0].voxels
    files = compressed_copy(native, tmp_path / "jpegls", JPEGLSLossless)  # decoded by the workers
    assert np.array_equal(load_series(files).volumes[0].voxels, expected)
    pool = decode_processes.decode_processes()
    workers = list(pool._processes.values())  # noqa: SLF001 - the processes to kill
    assert workers
    for process in workers:
        with contextlib.suppress(ProcessLookupError):  # the pool ends the others once one dies
            os.kill(process.pid, signal.SIGKILL)
        process.join(10)
    for _ in range(2):
        result = load_series(files)
        assert not result.warnings
        assert np.array_equal(result.volumes[0].voxels, expected)
    assert decode_processes.decode_processes() is not pool
