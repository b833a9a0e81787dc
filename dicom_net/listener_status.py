"""Counters shared by the receiver processes and the status file the GUI reads.

``<archive>/listener-status.json`` is replaced atomically (:mod:`dicom_net.atomic`) so a reader never
sees half a file. It carries UIDs and counts only, never patient data. It names the writing
process (PID and start time); :func:`read_status` reports a "running" listener that is gone as "dead".
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from dicom_net.atomic import write_bytes_atomic

STATUS_FILE_NAME = "listener-status.json"
COUNTERS = ("associations", "rejected", "echoes", "stored", "duplicates", "versions", "failed", "errors")
_UID_BYTES = 65  # a UID has up to 64 characters, plus the terminating NUL
_ERROR_BYTES = 200
_mp = multiprocessing.get_context("fork")


class ListenerStats:
    """Counters in shared memory, so worker processes can update what the parent reports."""

    def __init__(self) -> None:
        self._counts = _mp.Array("q", len(COUNTERS))
        self._last_study = _mp.Array("c", _UID_BYTES)
        self._last_error = _mp.Array("c", _ERROR_BYTES)

    def add(self, name: str, n: int = 1) -> None:
        with self._counts.get_lock():
            self._counts[COUNTERS.index(name)] += n

    def set_last_study(self, uid: str) -> None:
        with self._last_study.get_lock():
            self._last_study.value = uid.encode("ascii", "replace")[: _UID_BYTES - 1]

    def set_last_error(self, text: str) -> None:
        with self._last_error.get_lock():
            self._last_error.value = text.encode("ascii", "replace")[: _ERROR_BYTES - 1]

    def snapshot(self) -> dict[str, Any]:
        with self._counts.get_lock():
            counts = dict(zip(COUNTERS, self._counts[:]))
        return {
            "counts": counts,
            "last_study_uid": self._last_study.value.decode("ascii") or None,
            "last_error": self._last_error.value.decode("ascii") or None,
        }


def _write(path: Path, payload: dict[str, Any]) -> None:
    write_bytes_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode("utf-8"))


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None when it is gone (or a zombie)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.Error, ValueError):
        return None


def is_listener_process(pid: Any, started: Any) -> bool:
    """Whether ``pid`` is alive and is the process that wrote the status (not a reused PID)."""
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return False
    now = process_started(pid)
    return now is not None and abs(now - started) < 0.5


def read_status(archive_dir: Path) -> dict[str, Any] | None:
    """The listener's last status, or None when no listener has written one.

    A status that says "running" for a process that is gone (killed, the machine restarted) or
    whose PID now belongs to another process comes back as state "dead".
    """
    try:
        status = json.loads((Path(archive_dir) / STATUS_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(status, dict):
        return None
    if status.get("state") == "running" and not is_listener_process(
        status.get("pid"), status.get("pid_started")
    ):
        status["state"] = "dead"
    return status


def record_start_failure(archive_dir: Path, identity: dict[str, Any], error: str) -> None:
    """Say in the status file why this listener could not start (e.g. its port is in use), unless
    the file belongs to a listener that is running (then it is that one's, and stays)."""
    current = read_status(archive_dir)
    if current is not None and current.get("state") == "running":
        return
    payload = {
        **identity,
        "pid": os.getpid(),
        "pid_started": process_started(os.getpid()),
        "state": "failed",
        "error": error,
        "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "updated_epoch": time.time(),
    }
    try:
        _write(Path(archive_dir) / STATUS_FILE_NAME, payload)
    except OSError:
        pass  # the archive folder itself may be the problem; the exit code and log still say why


class StatusWriter:
    """Rewrites the status file when the counters change (and at start and stop)."""

    def __init__(
        self, path: Path, stats: ListenerStats, identity: dict[str, Any], interval_s: float = 0.5
    ) -> None:
        self.path = path
        self.stats = stats
        self.identity = {
            **identity,
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] | None = None

    def write(self, state: str) -> None:
        snap = self.stats.snapshot()
        if snap == self._last and state == "running":
            return
        self._last = snap
        payload = {
            **self.identity,
            **snap,
            "state": state,
            "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "updated_epoch": time.time(),
        }
        try:
            _write(self.path, payload)
        except OSError:
            pass  # a full disk must not stop the receiver; the counters still tell the story next time

    def start(self) -> None:
        self.write("running")
        self._thread = threading.Thread(target=self._run, name="listener-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write("running")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._last = None
        self.write("stopped")


def stop_running_listener(archive_dir: Path, timeout_s: float = 30.0) -> int | None:
    """SIGTERM the listener serving ``archive_dir`` (it finishes running associations) and wait
    for it to end, SIGKILL after ``timeout_s``; returns its PID, or None when none is running.
    Only the process that wrote the status file is signalled, never one that got its PID since."""
    status = read_status(archive_dir)
    if status is None or status.get("state") != "running":
        return None
    pid = int(status["pid"])
    try:
        process = psutil.Process(pid)
        process.terminate()
        deadline = time.monotonic() + timeout_s
        while process_started(pid) is not None:  # a zombie (its parent has not reaped it) has ended
            if time.monotonic() > deadline:
                process.kill()
                break
            time.sleep(0.05)
    except psutil.NoSuchProcess:
        pass
    return pid
