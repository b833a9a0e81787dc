"""Series loading benchmark: our loader vs SimpleITK's ImageSeriesReader on the same files.

    .venv/bin/python bench/load.py [--slices 500] [--matrix 512] [--data DIR] [--runs 3] [--workers N]
                                   [--compressed-slices 255] [--cases native,jpeg-lossless,j2k]

Generates (once, cached in DIR) a phantom CT of SLICES x MATRIX x MATRIX uncompressed slices in
shuffled file names, and COMPRESSED_SLICES noisy phantom slices (CT-like noise, SD 20 HU, so the
codecs work as hard as on real CT) stored as JPEG Lossless SV1 (DCMTK dcmcjpeg) and as JPEG 2000
lossless (pydicom + OpenJPEG). Each case is loaded in fresh subprocesses (page cache warm, as
after a C-STORE; ours decodes both in threads without the GIL, see viewer.decode_gil_free), and
a second load in the same process is shown too (for syntaxes that use the decoding processes,
those are then already running):

* ours: time to the first image on screen (preview decoded and windowed to uint8), time to the
  middle slice of the sorted volume, time to the full volume, peak RSS growth;
* SimpleITK: ImageSeriesReader (GDCM sorting + read), full volume and peak RSS growth;
* plane extraction on the loaded volume: axial/coronal (exact voxel copies), 30-degree oblique
  and 10 mm MIP slabs (vtkImageReslice), best of 3.

Prints the median of RUNS runs and, per case, the full-load time ratio ours / SimpleITK (aim:
<= 0.5), and the CPU seconds each used (ours with its decoding processes): on a busy shared
machine the wall-clock ratio swings with the other load, CPU seconds much less. Anchors (2-core
CPU): 0.7-1.4 s for 500 slices, first image ~3 ms; oblique 512^2 ~20 ms, slab MIP 95-345 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    """CPU seconds used by this process and its descendants, live (the decoding workers) or ended:
    a figure that does not depend on how busy the machine is."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, children_user, children_system
    for proc in me.children(recursive=True):
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(folder: Path, slices: int, matrix: int) -> list[Path]:
    """Write the phantom once; file names are SOP Instance UIDs, so directory order is random."""
    marker = folder / f".complete-{slices}x{matrix}"
    if marker.exists():
        return sorted(folder.glob("*.dcm"))
    from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets

    for old in folder.glob("*.dcm"):
        old.unlink()
    geometry = SeriesGeometry(
        rows=matrix, columns=matrix, pixel_spacing=(0.7, 0.7), slices=slices, slice_step=0.8
    )
    files = write_datasets(ct_series(geometry), folder)
    marker.touch()
    return files


def generate_compressed(folder: Path, slices: int, matrix: int, case: str) -> list[Path]:
    """Noisy phantom slices in a compressed transfer syntax (once; cached like ``generate``)."""
    marker = folder / f".complete-{slices}x{matrix}"
    if marker.exists():
        return sorted(folder.glob("*.dcm"))
    import numpy as np
    from pydicom.uid import JPEG2000Lossless

    from dicom_net.synthetic import SeriesGeometry, ct_phantom_hu, ct_series

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.dcm"):
        old.unlink()
    rng = np.random.default_rng(7)
    geometry = SeriesGeometry(
        rows=matrix, columns=matrix, pixel_spacing=(0.7, 0.7), slices=slices, slice_step=0.8
    )

    def noisy(points: np.ndarray) -> np.ndarray:
        return ct_phantom_hu(points) + rng.normal(0.0, 20.0, points.shape[:-1]).astype(np.float32)

    for ds in ct_series(geometry, hu=noisy):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        if case == "j2k":
            ds.compress(JPEG2000Lossless)
            ds.save_as(path, enforce_file_format=True)
        else:
            native = folder / "native.tmp"
            ds.save_as(native, enforce_file_format=True)
            subprocess.run(["dcmcjpeg", "+e1", str(native), str(path)], check=True)
            native.unlink()
    marker.touch()
    return sorted(folder.glob("*.dcm"))


def run_ours(folder: Path, workers: int | None, planes: bool) -> dict[str, float]:
    import numpy as np

    from viewer.loader import load_series
    from viewer.reslice import window_to_uint8

    files = sorted(folder.glob("*.dcm"))
    base = rss_mib()
    marks: dict[str, float] = {}
    c0 = cpu_s()
    t0 = time.perf_counter()

    def on_slice(event: object) -> None:
        if "first_image_s" not in marks:
            window_to_uint8(event.pixels, 400, 40)  # type: ignore[attr-defined]
            marks["first_image_s"] = time.perf_counter() - t0
        elif "first_sorted_slice_s" not in marks and not event.preview:  # type: ignore[attr-defined]
            marks["first_sorted_slice_s"] = time.perf_counter() - t0

    result = load_series(files, on_slice=on_slice, workers=workers)
    marks["full_volume_s"] = time.perf_counter() - t0
    marks["cpu_s"] = cpu_s() - c0
    volume = result.volumes[0]
    marks["peak_rss_growth_mib"] = peak_rss_mib() - base
    marks["volume_mib"] = volume.voxels.nbytes / 2**20
    marks["checksum"] = float(np.asarray(volume.voxels[len(volume.voxels) // 2], dtype=np.int64).sum())
    if planes:
        marks.update(time_planes(volume))
    del result, volume
    c, t = cpu_s(), time.perf_counter()
    load_series(files, workers=workers)
    marks["second_load_s"] = time.perf_counter() - t
    marks["second_cpu_s"] = cpu_s() - c
    return marks


def time_planes(volume: object) -> dict[str, float]:
    """Best of 3 for the planes a reader scrolls through (after the load, same process)."""
    import numpy as np

    from viewer.reslice import Oblique, plane_image

    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    oblique = Oblique((c, s, 0.0), (0.0, 0.0, -1.0))
    cases = {
        "axial_ms": ("axial", 0.0),
        "coronal_ms": ("coronal", 0.0),
        "oblique_ms": (oblique, 0.0),
        "coronal_slab10_mip_ms": ("coronal", 10.0),
        "oblique_slab10_mip_ms": (oblique, 10.0),
    }
    out = {}
    for key, (plane, slab) in cases.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            plane_image(volume, plane, slab_mm=slab, slab_mode="mip")  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
        out[key] = min(times) * 1e3
    return out


def run_sitk(folder: Path) -> dict[str, float]:
    import numpy as np
    import SimpleITK as sitk

    base = rss_mib()
    c0 = cpu_s()
    t0 = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    elapsed = time.perf_counter() - t0
    used = cpu_s() - c0
    array = sitk.GetArrayViewFromImage(image)
    return {
        "full_volume_s": elapsed,
        "cpu_s": used,
        "peak_rss_growth_mib": peak_rss_mib() - base,
        "volume_mib": array.nbytes / 2**20,
        "checksum": float(np.asarray(array[len(array) // 2], dtype=np.int64).sum()),
    }


def child(which: str, folder: Path, workers: int | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", which, "--folder", str(folder)]
    if workers:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "hulu-bench-load")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--compressed-slices", type=int, default=255)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--child", choices=("ours", "sitk"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        native = args.folder.name == "native"
        marks = run_ours(args.folder, args.workers, native) if args.child == "ours" else run_sitk(args.folder)
        print(json.dumps(marks))
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    print(f"cpus: {os.cpu_count()}, workers: {args.workers or 'default'}, runs: {args.runs} (median)")
    for case in cases:
        bench_case(args, case)
    return 0


CASES = ("native", "jpeg-lossless", "j2k")


def bench_case(args: argparse.Namespace, case: str) -> None:

    folder = args.data / case
    t = time.perf_counter()
    if case == "native":
        folder.mkdir(parents=True, exist_ok=True)
        files = generate(folder, args.slices, args.matrix)
    else:
        files = generate_compressed(folder, args.compressed_slices, args.matrix, case)
    print(
        f"\n[{case}] {len(files)} slices {args.matrix}x{args.matrix} in {folder} "
        f"(ready in {time.perf_counter() - t:.1f} s; load average {os.getloadavg()[0]:.1f})"
    )
    ours, sitk = [], []
    for _ in range(args.runs):  # interleaved so both see the same machine load
        ours.append(child("ours", folder, args.workers))
        sitk.append(child("sitk", folder, args.workers))
    if ours[0]["checksum"] != sitk[0]["checksum"]:
        print("WARNING: middle slices differ between the two readers")
    print(
        f"ours:      first image {median(ours, 'first_image_s') * 1e3:7.1f} ms | "
        f"middle sorted slice {median(ours, 'first_sorted_slice_s') * 1e3:7.1f} ms | "
        f"full volume {median(ours, 'full_volume_s'):6.3f} s, CPU {median(ours, 'cpu_s'):.2f} s "
        f"(second load {median(ours, 'second_load_s'):6.3f} s, CPU {median(ours, 'second_cpu_s'):.2f} s)"
        f" | peak RSS +{median(ours, 'peak_rss_growth_mib'):.0f} MiB (volume {ours[0]['volume_mib']:.0f} MiB)"
    )
    if case == "native":
        planes = ", ".join(
            f"{k[:-3].replace('_', ' ')} {median(ours, k):.1f} ms"
            for k in (
                "axial_ms",
                "coronal_ms",
                "oblique_ms",
                "coronal_slab10_mip_ms",
                "oblique_slab10_mip_ms",
            )
        )
        print(f"planes: {planes}")
    print(
        f"SimpleITK: full volume {median(sitk, 'full_volume_s'):6.3f} s, CPU {median(sitk, 'cpu_s'):.2f} s | "
        f"peak RSS +{median(sitk, 'peak_rss_growth_mib'):.0f} MiB (volume {sitk[0]['volume_mib']:.0f} MiB)"
    )
    ratio = median(ours, "full_volume_s") / median(sitk, "full_volume_s")
    warm = median(ours, "second_load_s") / median(sitk, "full_volume_s")
    print(f"[{case}] full-load time ours/SimpleITK: {ratio:.2f}x (second load {warm:.2f}x; aim <= 0.5x)")


if __name__ == "__main__":
    sys.exit(main())
