"""DCMTK's echoscu/storescu talk to our listener: in-process and as the real `receive` process."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_net.archive import Archive
from dicom_net.listener import ListenerConfig, start_listener
from dicom_net.listener_status import read_status
from dicom_net.synthetic import write_datasets
from dicom_net.validation import inspect_part10
from tests.conftest import free_port
from tests.dicom_net.conftest import DCMTK_ENV, LISTENER_AET, need_dcmtk
from tests.dicom_net.dicom_objects import REAL_SAMPLES, sample_file, small_ct

pytestmark = pytest.mark.network_peer
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.50": ("-xy",),
    "1.2.840.10008.1.2.4.70": ("-xs",),
    "1.2.840.10008.1.2.4.90": ("-xv",),
    "1.2.840.10008.1.2.4.80": ("-xt",),
    "1.2.840.10008.1.2.5": ("-xr",),
    "1.2.840.10008.1.2.1.99": ("-xd",),
    "1.2.840.10008.1.2.2": ("-xb",),
}
REPO = Path(__file__).resolve().parents[2]


def dataset_bytes(part10: bytes) -> bytes:
    """The bytes after the file meta group (whose length element pydicom always writes)."""
    (meta_length,) = struct.unpack("<I", part10[140:144])
    return part10[144 + meta_length :]


def storescu(
    port: int,
    files: list[Path],
    *,
    aec: str = LISTENER_AET,
    aet: str = "DCMTKSCU",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    need_dcmtk("storescu")
    return subprocess.run(
        ["storescu", "-aec", aec, "-aet", aet, *extra, "127.0.0.1", str(port), *map(str, files)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def echoscu(port: int, *, aec: str = LISTENER_AET, aet: str = "DCMTKSCU") -> subprocess.CompletedProcess:
    need_dcmtk("echoscu")
    return subprocess.run(
        ["echoscu", "-aec", aec, "-aet", aet, "127.0.0.1", str(port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_echoscu_gets_success_and_is_counted(listener) -> None:
    assert echoscu(listener.port).returncode == 0
    assert listener.stats.snapshot()["counts"]["echoes"] == 1


def test_storescu_series_arrives_byte_for_byte(listener, tmp_path: Path) -> None:
    slices = small_ct(10, rows=64)
    files = write_datasets(slices, tmp_path / "src")
    result = storescu(listener.port, files)
    assert result.returncode == 0, result.stderr
    archive = listener.archive
    [study] = archive.studies()
    assert study.study_uid == slices[0].StudyInstanceUID and study.instance_count == 10
    [series] = archive.series(study.study_uid)
    stored = archive.instances(series.series_uid)
    assert [i.instance_number for i in stored] == list(range(1, 11))
    for inst, src in zip(stored, files):
        assert dataset_bytes(inst.path.read_bytes()) == dataset_bytes(src.read_bytes())
    assert listener.stats.snapshot()["counts"]["stored"] == 10
    assert storescu(listener.port, files[:3]).returncode == 0  # re-sent: success, nothing new
    assert listener.stats.snapshot()["counts"]["duplicates"] == 3
    assert archive.instance_count() == 10


def test_real_objects_in_every_syntax_and_class_arrive(listener) -> None:
    files = [sample_file(name) for name in REAL_SAMPLES]
    by_syntax: dict[str, list[Path]] = {}
    for f in files:
        by_syntax.setdefault(inspect_part10(f.read_bytes()).transfer_syntax, []).append(f)
    for syntax, group in by_syntax.items():  # storescu proposes a compressed syntax only when told to
        result = storescu(listener.port, group, extra=("-R", *STORESCU_PROPOSE.get(syntax, ())))
        assert result.returncode == 0, result.stderr

    def fingerprint(path: Path) -> tuple[str, str, int, bytes]:
        info = inspect_part10(path.read_bytes())
        ds = dcmread(path)
        pixels = (
            bytes(ds.PixelData) if "PixelData" in ds else bytes(ds.get("WaveformSequence")[0].WaveformData)
        )
        return info.sop_instance_uid, info.transfer_syntax, info.frames, pixels

    archive = listener.archive
    stored = [
        inst.path
        for study in archive.studies()
        for series in archive.series(study.study_uid)
        for inst in archive.instances(series.series_uid, all_versions=True)
    ]
    # same objects, same transfer syntax, same frames and identical pixel bytes: nothing transcoded
    assert sorted(map(fingerprint, stored)) == sorted(map(fingerprint, files))
    assert listener.stats.snapshot()["counts"]["failed"] == 0
    us = next(fingerprint(p) for p in stored if fingerprint(p)[2] == 120)
    assert us[1] == "1.2.840.10008.1.2.4.50"  # the JPEG cine arrived as JPEG


def test_wrong_called_ae_title_is_rejected(listener) -> None:
    assert echoscu(listener.port, aec="SOMEONEELSE").returncode != 0
    assert listener.stats.snapshot()["counts"]["echoes"] == 0


@pytest.mark.parametrize(
    "allow, calling, accepted",
    [
        (["GOODAE"], "GOODAE", True),
        (["GOODAE"], "BADAE", False),
        (["GOODAE@127.0.0.1"], "GOODAE", True),
        (["GOODAE@10.255.0.9"], "GOODAE", False),  # right AE title, wrong host
        (["GOODAE@localhost"], "GOODAE", True),  # a host name is resolved, not compared as text
        (["GOODAE@no-such-host.invalid", "OTHER@localhost"], "GOODAE", False),
    ],
)
def test_allow_list_of_calling_ae_titles_and_hosts(
    tmp_path: Path, allow: list[str], calling: str, accepted: bool
) -> None:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", allow=allow)
    )
    try:
        files = write_datasets(small_ct(1), tmp_path / "src")
        result = storescu(handle.port, files, aet=calling)
        assert (result.returncode == 0) is accepted, result.stderr
        assert handle.archive.instance_count() == (1 if accepted else 0)
        assert handle.stats.snapshot()["counts"]["rejected"] == (0 if accepted else 1)
        if not accepted:  # an A-ASSOCIATE-RJ the sender can report, not a dropped connection
            said = result.stdout + result.stderr
            assert "Association Rejected" in said and "Rejected Permanent" in said, said
            assert "Calling AE Title Not Recognized" in said, said
    finally:
        handle.stop(grace_s=1.0)


def test_echoscu_from_a_calling_ae_not_on_the_allow_list_reports_the_rejection(tmp_path: Path) -> None:
    config = ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", allow=["GOODAE"])
    with start_listener(config, write_status=False) as handle:
        result = echoscu(handle.port, aet="BADAE")
        said = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Result: Rejected Permanent, Source: Service User" in said, said
        assert "Reason: Calling AE Title Not Recognized" in said, said
        assert echoscu(handle.port, aet="GOODAE").returncode == 0


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_receive_command_runs_as_its_own_process(tmp_path: Path, workers: int) -> None:
    need_dcmtk("storescu", "echoscu")
    port = free_port()
    archive_dir = tmp_path / "arc"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "receive",
            "--aet",
            LISTENER_AET,
            "--port",
            str(port),
            "--archive",
            str(archive_dir),
            "--workers",
            str(workers),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: (read_status(archive_dir) or {}).get("state") == "running")
        _wait_for(lambda: echoscu(port).returncode == 0)
        series = [write_datasets(small_ct(5, rows=48), tmp_path / f"src{i}") for i in range(2)]
        senders = [
            subprocess.Popen(
                ["storescu", "-aec", LISTENER_AET, "127.0.0.1", str(port), *map(str, files)], env=DCMTK_ENV
            )
            for files in series
        ]
        assert [s.wait(60) for s in senders] == [0, 0]
        _wait_for(lambda: read_status(archive_dir)["counts"]["stored"] == 10)
        status = read_status(archive_dir)
        assert status["pid"] == proc.pid and status["aet"] == LISTENER_AET and status["port"] == port
        assert status["workers"] == workers
        assert status["last_study_uid"] in {inspect_part10(s[0].read_bytes()).study_uid for s in series}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        status = json.loads((archive_dir / "listener-status.json").read_text())
        assert status["state"] == "stopped" and status["counts"]["stored"] == 10
        with Archive(archive_dir) as archive:
            assert sorted(s.instance_count for s in archive.studies()) == [5, 5]
        log = proc.stdout.read()
        assert "PHANTOM" not in log and "PH0001" not in log  # no patient names or IDs in the log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_receive_restarts_a_killed_worker_and_fails_cleanly_on_a_busy_port(tmp_path: Path) -> None:
    need_dcmtk("storescu", "echoscu")
    import psutil

    port = free_port()
    archive_dir = tmp_path / "arc"
    cmd = [
        sys.executable,
        "-m",
        "app.cli.main",
        "receive",
        "--aet",
        LISTENER_AET,
        "--port",
        str(port),
        "--archive",
    ]
    proc = subprocess.Popen(
        [*cmd, str(archive_dir), "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2)
        _wait_for(lambda: echoscu(port).returncode == 0)
        victim = psutil.Process(proc.pid).children()[0]
        victim.kill()
        _wait_for(
            lambda: (
                victim.pid not in [c.pid for c in psutil.Process(proc.pid).children()]
                and len(psutil.Process(proc.pid).children()) == 2
            )
        )
        files = write_datasets(small_ct(6), tmp_path / "src")
        for _ in range(3):  # the kernel spreads connections over both processes
            assert storescu(port, files).returncode == 0
        _wait_for(lambda: (read_status(archive_dir) or {}).get("counts", {}).get("errors") == 1)

        busy = subprocess.run(
            [*cmd, str(tmp_path / "other"), "--workers", "1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )  # same port, no SO_REUSEPORT: must fail, not hang
        assert busy.returncode == 1 and "cannot start the listener" in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    with Archive(archive_dir) as archive:
        assert archive.instance_count() == 6


def test_killing_the_receiver_mid_study_leaves_only_complete_indexed_files(tmp_path: Path) -> None:
    need_dcmtk("storescu", "echoscu")
    from tests.dicom_net.test_archive_crash import assert_index_points_only_at_complete_files

    port = free_port()
    archive_dir = tmp_path / "arc"
    cmd = [sys.executable, "-m", "app.cli.main", "receive", "--aet", LISTENER_AET, "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--archive", str(archive_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    files = write_datasets(small_ct(120, rows=256), tmp_path / "src")
    sender = None
    try:
        _wait_for(lambda: echoscu(port).returncode == 0)
        sender = subprocess.Popen(
            ["storescu", "-aec", LISTENER_AET, "127.0.0.1", str(port), *map(str, files)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: len(list((archive_dir / "studies").rglob("*.dcm"))) >= 15)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert sender.wait(30) != 0  # the sender noticed: nothing was acknowledged after the kill
    finally:
        if proc.poll() is None:
            proc.kill()
        if sender is not None and sender.poll() is None:
            sender.kill()
    on_disk = len(list((archive_dir / "studies").rglob("*.dcm")))
    assert 15 <= on_disk < 120
    with Archive(archive_dir) as archive:
        assert assert_index_points_only_at_complete_files(archive) <= on_disk
        assert not list(archive.tmp_dir.iterdir())  # the dead receiver's temp file is gone
        assert archive.reindex() == on_disk  # what `receive` does when it starts again
        assert assert_index_points_only_at_complete_files(archive) == on_disk
