"""The `receive` process and its workers: they die with their supervisor, the status file never
calls a dead process running, and a taken port is refused with the name of who holds it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dicom_net.archive import Archive
from dicom_net.listener_status import STATUS_FILE_NAME, read_status
from dicom_net.synthetic import write_datasets
from tests.conftest import free_port
from tests.dicom_net.conftest import LISTENER_AET, need_dcmtk
from tests.dicom_net.dicom_objects import small_ct
from tests.dicom_net.test_listener_dcmtk import REPO, echoscu, storescu
from tests.dicom_net.test_listener_dcmtk import _wait_for as wait_for
from tests.peers import _stop as stop

pytestmark = pytest.mark.network_peer


def receive(archive: Path, port: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "app.cli", "receive", "--aet", LISTENER_AET, "--port", str(port)]
    return subprocess.Popen(
        [*cmd, "--archive", str(archive), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killing_the_supervisor_takes_its_workers_down_and_frees_the_port(tmp_path: Path) -> None:
    need_dcmtk("storescu", "echoscu")
    port = free_port()
    first, second = tmp_path / "first", tmp_path / "second"
    supervisor = receive(first, port, "--workers", "2")
    replacement = None
    workers: list[int] = []
    try:
        wait_for(lambda: (read_status(first) or {}).get("state") == "running")
        wait_for(lambda: len(psutil.Process(supervisor.pid).children()) == 2)
        workers = [p.pid for p in psutil.Process(supervisor.pid).children()]
        wait_for(lambda: echoscu(port).returncode == 0)

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout=15)
        raw = json.loads((first / STATUS_FILE_NAME).read_text())
        assert raw["state"] == "running" and raw["pid"] == supervisor.pid  # what the dead one left
        assert read_status(first)["state"] == "dead"  # what every reader is told

        replacement = receive(second, port, "--workers", "2")
        wait_for(lambda: (read_status(second) or {}).get("state") == "running")
        wait_for(lambda: echoscu(port).returncode == 0)
        files = write_datasets(small_ct(4), tmp_path / "src")
        for _ in range(3):  # with orphans sharing the port, some would land in the first archive
            assert storescu(port, files).returncode == 0
        wait_for(lambda: read_status(second)["counts"]["duplicates"] == 8)
        with Archive(first) as archive:
            assert archive.instance_count() == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if replacement is not None:
            stop(replacement, 30)


def test_a_status_naming_a_live_but_different_process_is_not_running(tmp_path: Path) -> None:
    tmp_path.joinpath(STATUS_FILE_NAME).write_text(
        json.dumps({"state": "running", "pid": os.getpid(), "pid_started": 1.0, "counts": {}})
    )  # our PID, but not our start time: a PID reused after the listener died
    assert read_status(tmp_path)["state"] == "dead"
    started = psutil.Process().create_time()
    tmp_path.joinpath(STATUS_FILE_NAME).write_text(
        json.dumps({"state": "running", "pid": os.getpid(), "pid_started": started, "counts": {}})
    )
    assert read_status(tmp_path)["state"] == "running"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_naming_the_process_that_holds_it(tmp_path: Path, workers: str) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as an orphaned worker would
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        proc = receive(tmp_path / "arc", port, "--workers", workers)
        try:
            assert proc.wait(60) == 1
        finally:
            stop(proc)
        said = f"port {port} is in use by process {os.getpid()}"
        assert said in proc.stderr.read()
        status = read_status(tmp_path / "arc")
        assert status["state"] == "failed" and said in status["error"]
    finally:
        holder.close()


def receive_stop(archive: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "receive", "--stop", "--archive", str(archive)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_receive_stop_ends_the_listener_of_an_archive(tmp_path: Path) -> None:
    archive = tmp_path / "arc"
    listener = receive(archive, free_port(), "--workers", "2")
    try:
        wait_for(lambda: (read_status(archive) or {}).get("state") == "running")
        stopper = receive_stop(archive)
        assert stopper.returncode == 0 and f"stopped the listener (pid {listener.pid})" in stopper.stdout
        assert listener.wait(30) == 0  # a clean SIGTERM stop
        assert read_status(archive)["state"] == "stopped"
        again = receive_stop(archive)
        assert again.returncode == 1 and "no listener is receiving" in again.stdout
    finally:
        stop(listener, 30)
