"""Receive speed: our listener vs DCMTK's storescp, fed the same series by DCMTK's storescu.

Both receivers run as their own processes with TCP_NODELAY, a fresh output folder per round and
the same PDU size; rounds alternate between them so machine load hits both alike. Ours
validates and indexes every object and, by default, fsyncs it before answering; storescp only
writes files (never fsyncs). Ours is also measured with ``--durability batch`` (fsync within
~50 ms after answering). The last line printed is the ratio ours (default)/DCMTK in images/s.

storescp listens on every interface, so by default the whole benchmark re-runs itself inside a
private network namespace (``unshare -rn``) where only loopback exists.

    .venv/bin/python bench/receive.py [--slices 300] [--size 512] [--rounds 3] [--workers 1]

``--startup-files N`` instead times what the listener does at start on an archive of N small
objects (warm page cache): the full ``reindex()`` it used to run beside ``adopt_unindexed()``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENV = {**os.environ, "TCP_NODELAY": "1"}
PDU = "131072"  # DCMTK's largest; both receivers get the same


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("receiver did not start listening")


def send(port: int, aet: str, files: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        ["storescu", "-aec", aet, "-aet", "BENCH", "--max-pdu", PDU, "127.0.0.1", str(port), *files],
        env=ENV,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"storescu to {aet} failed: {result.stderr[-500:]}")
    return elapsed


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def round_ours(files: list[str], work: Path, workers: int, durability: str) -> float:
    port = free_port()
    archive = work / "ours"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "receive",
            "--aet",
            "HULUWS",
            "--port",
            str(port),
            "--archive",
            str(archive),
            "--workers",
            str(workers),
            "--max-pdu",
            PDU,
            "--durability",
            durability,
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        elapsed = send(port, "HULUWS", files)
    finally:
        stop(proc)
    from dicom_net.archive import Archive

    with Archive(archive) as arc:
        if arc.instance_count() != len(files):
            raise RuntimeError(f"our archive holds {arc.instance_count()} of {len(files)} objects")
    shutil.rmtree(archive)
    return elapsed


def round_dcmtk(files: list[str], work: Path) -> float:
    port = free_port()
    out = work / "dcmtk"
    out.mkdir()
    proc = subprocess.Popen(
        ["storescp", "--max-pdu", PDU, "-aet", "STORESCP", "-od", str(out), str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        elapsed = send(port, "STORESCP", files)
    finally:
        stop(proc)
    if len(list(out.iterdir())) != len(files):
        raise RuntimeError("storescp did not write every object")
    shutil.rmtree(out)
    return elapsed


def run(args: argparse.Namespace) -> None:
    from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets

    with tempfile.TemporaryDirectory(prefix="bench-receive-") as tmp:
        work = Path(tmp)
        geometry = SeriesGeometry(rows=args.size, columns=args.size, slices=args.slices)
        files = [str(p) for p in write_datasets(ct_series(geometry), work / "series")]
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6
        print(
            f"series: {args.slices} CT slices {args.size}x{args.size} ({megabytes:.0f} MB); "
            f"{args.rounds} interleaved rounds; our receiver: {args.workers} process(es); PDU {PDU} B; "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        ours, batch, dcmtk = [], [], []
        for r in range(args.rounds):
            dcmtk.append(args.slices / round_dcmtk(files, work))
            ours.append(args.slices / round_ours(files, work, args.workers, "fsync"))
            batch.append(args.slices / round_ours(files, work, args.workers, "batch"))
            print(
                f"round {r + 1}: ours {ours[-1]:7.1f} img/s (--durability batch {batch[-1]:7.1f})   "
                f"DCMTK storescp {dcmtk[-1]:7.1f} img/s"
            )
        ours_median, batch_median, dcmtk_median = map(statistics.median, (ours, batch, dcmtk))
        print(
            f"median: ours {ours_median:.1f} img/s, ours --durability batch {batch_median:.1f} img/s, "
            f"DCMTK storescp {dcmtk_median:.1f} img/s (load {os.getloadavg()[0]:.1f})"
        )
        print(f"ratio ours --durability batch/DCMTK: {batch_median / dcmtk_median:.2f}")
        print(f"ratio ours/DCMTK: {ours_median / dcmtk_median:.2f}")


def startup(files: int, rounds: int) -> None:
    """Listener start on an archive of ``files`` small objects: full reindex vs adopting new files."""
    from dicom_net.archive import Archive
    from dicom_net.synthetic import SeriesGeometry, ct_series
    from tests.dicom_net.dicom_objects import part10

    root = Path(tempfile.mkdtemp(prefix="bench-startup-")) / "arc"
    with Archive(root) as archive:
        for start in range(0, files, 100):
            series = ct_series(SeriesGeometry(rows=8, columns=8, slices=min(100, files - start)))
            for ds in series:
                archive.store_bytes(part10(ds), defer_index=True, sync_before_return=False)
        archive.adopt_unindexed()
        assert archive.instance_count() == files
    timings: dict[str, list[float]] = {"reindex": [], "adopt_unindexed": []}
    for _ in range(rounds):
        for name, runs in timings.items():
            begin = time.perf_counter()
            with Archive(root) as archive:
                getattr(archive, name)()
            runs.append(time.perf_counter() - begin)
    full, adopt = (statistics.median(timings[n]) for n in ("reindex", "adopt_unindexed"))
    print(
        f"listener start on {files} archived objects, median of {rounds}: full reindex {full * 1000:.0f} ms, "
        f"adopt_unindexed {adopt * 1000:.0f} ms ({full / adopt:.1f}x faster)"
    )
    shutil.rmtree(root.parent, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="receiver processes for ours (SO_REUSEPORT)")
    parser.add_argument(
        "--no-netns",
        action="store_true",
        help="run on the host's loopback (storescp is "
        "then reachable from the network while the benchmark runs)",
    )
    parser.add_argument("--inside-netns", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--startup-files", type=int, default=0, help="time the listener's start scan instead")
    args = parser.parse_args()
    if args.startup_files:
        startup(args.startup_files, args.rounds)
        return 0
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            print(f"{tool} (DCMTK) is not installed", file=sys.stderr)
            return 2
    if not args.no_netns and not args.inside_netns:
        if shutil.which("unshare") and shutil.which("ip"):
            inner = [sys.executable, *sys.argv, "--inside-netns"]
            script = 'ip link set lo up && exec "$@"'
            return subprocess.call(["unshare", "-rn", "sh", "-c", script, "sh", *inner])
        print("unshare/ip not available: running on the host loopback", file=sys.stderr)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
