"""Query/retrieve speed against Orthanc: our SCU beside DCMTK findscu/getscu/movescu, and our
DICOMweb client beside curl, same run.

    sudo .venv/bin/python bench/retrieve.py [--slices 100] [--matrix 256] [--repeat 3]

Orthanc runs in a private network namespace (needs root, see tests/peers.py) holding one CT
series (generated phantom, uncompressed). Figures are medians of ``--repeat`` runs: C-STORE of
the series (ours vs storescu); C-FIND study level (vs findscu); C-GET into a fresh archive, with
each object fsynced and indexed before its answer (as before C-GET used the archive's batches),
and receiving only with nothing written (vs getscu writing files); C-MOVE to our listener (ours,
and movescu asking for the same move); movescu receiving itself (DCMTK on both ends).
DICOMweb (Orthanc's plugin, HTTP basic auth on): STOW-RS of the series, QIDO-RS study query and
WADO-RS of the series into a fresh archive (and receiving only), each beside curl doing the same
HTTP request with nothing parsed or stored (the STOW body built beforehand).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread

from dicom_net import scu
from dicom_net.archive import Archive
from dicom_net.listener import ListenerConfig, start_listener
from dicom_net.pacs_nodes import DicomWebNode, PacsNode
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.peers import orthanc_server, private_network, run_dcmtk, run_storescu

CALLING = "BENCHSCU"
WEB_USER, WEB_PASSWORD = "bench", "bench-pw"
BOUNDARY = "hulu-bench-boundary"
LISTENER = "BENCHLSN"
MOVESCU_SELF = "MOVESELF"


class _Discard:
    """An archive that keeps nothing: isolates the SCU's own cost from the archive's durable writes."""

    def store_bytes(self, part10: bytes, **_: object) -> None:
        return None


class _FsyncEach:
    """Our archive without batching (no ``flush``): each object fsynced and indexed before its
    C-STORE-RSP, as C-GET did before it used the archive's batches. Same-run comparison."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def store_bytes(self, part10: bytes, **kw: object) -> object:
        return self.archive.store_bytes(part10, **kw)


def median_time(run: Callable[[int], None], repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check(proc, what: str) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--noproxy",
            "*",
            "-u",
            f"{WEB_USER}:{WEB_PASSWORD}",
            "-o",
            "/dev/null",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def dicomweb_rows(orthanc, files: list[Path], study_uid: str, tmp: Path, args) -> list[tuple]:
    """STOW-RS, QIDO-RS and WADO-RS of the series: ours (dicomweb-client) beside curl."""
    node = DicomWebNode("web", orthanc.dicomweb_url, user=WEB_USER, password=WEB_PASSWORD)
    series_uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    base = orthanc.dicomweb_url
    body = tmp / "stow-body"
    with open(body, "wb") as out:
        for path in files:
            out.write(f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(path.read_bytes())
        out.write(f"\r\n--{BOUNDARY}--".encode())
    stow_type = f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}'

    def stow_ours(i: int) -> None:
        orthanc.clear()
        assert scu.send(node, files).sent == args.slices

    def stow_curl(i: int) -> None:
        orthanc.clear()
        check(
            curl("-X", "POST", "-H", stow_type, "--data-binary", f"@{body}", f"{base}/studies"), "curl STOW"
        )

    stow_ours_s = median_time(stow_ours, args.repeat)
    stow_curl_s = median_time(stow_curl, args.repeat)
    assert orthanc.instance_count() == args.slices
    qido_url = f"{base}/studies?StudyInstanceUID={study_uid}&includefield=PatientName"
    qido_ours = median_time(lambda i: scu.find(node, "study", study_uid=study_uid), max(args.repeat, 10))
    qido_curl = median_time(
        lambda i: check(curl("-H", "Accept: application/dicom+json", qido_url), "curl QIDO"),
        max(args.repeat, 10),
    )
    wado_url = f"{base}/studies/{study_uid}/series/{series_uid}"
    wado_accept = 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*'

    def wado_ours(i: int) -> None:
        with Archive(tmp / f"wado-ours-{i}") as archive:
            result = scu.retrieve(node, study_uid, series_uid, archive=archive)
        assert result.ok and len(result.stored) == args.slices, result

    def wado_receive_only(i: int) -> None:
        result = scu.retrieve(node, study_uid, series_uid, archive=_Discard())
        assert result.ok and len(result.stored) == args.slices, result

    wado_ours_s = median_time(wado_ours, args.repeat)
    wado_receive_s = median_time(wado_receive_only, args.repeat)
    wado_curl_s = median_time(lambda i: check(curl("-H", wado_accept, wado_url), "curl WADO"), args.repeat)
    n = args.slices
    return [
        (f"STOW-RS {n} images to Orthanc", stow_ours_s, stow_curl_s, "curl POST (body pre-built)"),
        ("QIDO-RS study query", qido_ours, qido_curl, "curl GET"),
        (f"WADO-RS {n} images (series) into archive", wado_ours_s, wado_curl_s, "curl GET to /dev/null"),
        (f"WADO-RS {n} images, receive only", wado_receive_s, wado_curl_s, "curl GET to /dev/null"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieve-"))
    files = write_datasets(
        ct_series(SeriesGeometry(rows=args.matrix, columns=args.matrix, slices=args.slices)), tmp / "series"
    )
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID

    with (
        private_network() as net,
        orthanc_server(tmp, network=net, dicomweb=True, users={WEB_USER: WEB_PASSWORD}) as orthanc,
    ):
        orthanc.upload(files)
        orthanc.add_modality("bench", CALLING, net.host_ip, 1)
        node = PacsNode("orthanc", orthanc.aet, orthanc.host, orthanc.dicom_port, calling_aet=CALLING)
        host, port = orthanc.host, str(orthanc.dicom_port)
        print(
            f"Orthanc in namespace {net.name}; series: {args.slices} x {args.matrix}^2 CT, {size_mb:.1f} MB; "
            f"median of {args.repeat}"
        )

        def store_ours(i: int) -> None:
            orthanc.clear()
            assert scu.send(node, files).sent == args.slices

        def store_dcmtk(i: int) -> None:
            orthanc.clear()
            check(run_storescu(files, host, int(port), orthanc.aet, CALLING), "storescu")

        store_ours_s = median_time(store_ours, args.repeat)
        store_dcmtk_s = median_time(store_dcmtk, args.repeat)
        assert orthanc.instance_count() == args.slices

        find_ours = median_time(lambda i: scu.find(node, "study", study_uid=study_uid), max(args.repeat, 10))
        find_dcmtk = median_time(
            lambda i: check(
                run_dcmtk(
                    "findscu",
                    "-S",
                    "-aet",
                    CALLING,
                    "-aec",
                    orthanc.aet,
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study_uid}",
                    "-k",
                    "PatientName",
                    host,
                    port,
                ),
                "findscu",
            ),
            max(args.repeat, 10),
        )

        def get_ours(i: int) -> None:
            with Archive(tmp / f"get-ours-{i}") as archive:
                result = scu.retrieve(node, study_uid, method="get", archive=archive)
            assert result.ok and len(result.stored) == args.slices, result

        def get_ours_fsync_each(i: int) -> None:
            with Archive(tmp / f"get-each-{i}") as archive:
                result = scu.retrieve(node, study_uid, method="get", archive=_FsyncEach(archive))
            assert result.ok and len(result.stored) == args.slices, result

        def get_dcmtk(i: int) -> None:
            out = tmp / f"get-dcmtk-{i}"
            out.mkdir()
            check(
                run_dcmtk(
                    "getscu",
                    "-S",
                    "-aet",
                    CALLING,
                    "-aec",
                    orthanc.aet,
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    f"StudyInstanceUID={study_uid}",
                    "-od",
                    out,
                    host,
                    port,
                ),
                "getscu",
            )
            assert len(list(out.iterdir())) == args.slices

        def get_ours_receive_only(i: int) -> None:
            result = scu.retrieve(node, study_uid, method="get", archive=_Discard())
            assert result.ok and len(result.stored) == args.slices, result

        get_ours_s = median_time(get_ours, args.repeat)
        get_each_s = median_time(get_ours_fsync_each, args.repeat)
        get_receive_s = median_time(get_ours_receive_only, args.repeat)
        get_dcmtk_s = median_time(get_dcmtk, args.repeat)

        # C-MOVE into our listener (bound on our side of the veth pair)

        def move_to_listener(i: int, dcmtk: bool) -> None:
            config = ListenerConfig(
                aet=LISTENER, port=0, archive_dir=tmp / f"move-{dcmtk}-{i}", host=net.host_ip
            )
            listener = start_listener(config, write_status=False)
            orthanc.add_modality("listener", LISTENER, net.host_ip, listener.port)
            start = time.perf_counter()
            if dcmtk:
                check(
                    run_dcmtk(
                        "movescu",
                        "-S",
                        "-aet",
                        CALLING,
                        "-aec",
                        orthanc.aet,
                        "-aem",
                        LISTENER,
                        "-k",
                        "QueryRetrieveLevel=STUDY",
                        "-k",
                        f"StudyInstanceUID={study_uid}",
                        host,
                        port,
                    ),
                    "movescu",
                )
            else:
                result = scu.retrieve(node, study_uid, method="move", move_destination=LISTENER)
                assert result.ok and result.completed == args.slices, result
            timings[(dcmtk, i)] = time.perf_counter() - start
            assert listener.archive.instance_count() == args.slices
            listener.stop()

        timings: dict[tuple[bool, int], float] = {}
        for i in range(args.repeat):
            move_to_listener(i, dcmtk=False)
            move_to_listener(i, dcmtk=True)
        move_ours = statistics.median(t for (d, _), t in timings.items() if not d)
        move_dcmtk_to_listener = statistics.median(t for (d, _), t in timings.items() if d)

        # movescu receiving itself: run it inside the namespace so its storage port stays private
        self_port = net.allocate_port()
        orthanc.add_modality("moveself", MOVESCU_SELF, "127.0.0.1", self_port)

        def move_dcmtk_self(i: int) -> None:
            out = tmp / f"move-self-{i}"
            out.mkdir()
            check(
                subprocess.run(
                    [
                        *net.exec_prefix(),
                        "movescu",
                        "-S",
                        "-aet",
                        MOVESCU_SELF,
                        "-aec",
                        orthanc.aet,
                        "-aem",
                        MOVESCU_SELF,
                        "+P",
                        str(self_port),
                        "-od",
                        str(out),
                        "-k",
                        "QueryRetrieveLevel=STUDY",
                        "-k",
                        f"StudyInstanceUID={study_uid}",
                        "127.0.0.1",
                        port,
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TCP_NODELAY": "1"},
                    check=False,
                ),
                "movescu (self)",
            )
            assert len(list(out.iterdir())) == args.slices

        move_self = median_time(move_dcmtk_self, args.repeat)
        web = dicomweb_rows(orthanc, files, study_uid, tmp, args)

    rows = [
        (f"C-STORE {args.slices} images to Orthanc", store_ours_s, store_dcmtk_s, "storescu"),
        ("C-FIND study level", find_ours, find_dcmtk, "findscu"),
        (f"C-GET {args.slices} images", get_ours_s, get_dcmtk_s, "getscu"),
        (f"C-GET {args.slices} images, fsync each first", get_each_s, get_dcmtk_s, "getscu"),
        (f"C-GET {args.slices} images, receive only", get_receive_s, get_dcmtk_s, "getscu (writes files)"),
        (
            f"C-MOVE {args.slices} images -> our listener",
            move_ours,
            move_dcmtk_to_listener,
            "movescu, same listener",
        ),
        (f"C-MOVE {args.slices} images, DCMTK both ends", None, move_self, "movescu +P (receives itself)"),
        *web,
    ]
    print(f"{'operation':44s} {'ours':>9s} {'peer':>9s} {'peer/ours':>10s}  peer")
    for label, ours, dcmtk, peer in rows:
        ours_txt = f"{ours * 1000:7.1f}ms" if ours is not None else "        -"
        ratio = f"{dcmtk / ours:9.2f}x" if ours else "         -"
        print(f"{label:44s} {ours_txt} {dcmtk * 1000:7.1f}ms {ratio}  {peer}")
    print(
        f"C-GET throughput ours: {args.slices / get_ours_s:.0f} img/s ({size_mb / get_ours_s:.0f} MB/s); "
        f"getscu: {args.slices / get_dcmtk_s:.0f} img/s"
    )
    wado_s = web[2][1]
    print(f"WADO-RS throughput ours: {args.slices / wado_s:.0f} img/s ({size_mb / wado_s:.0f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
