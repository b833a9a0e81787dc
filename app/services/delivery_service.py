"""The report delivery service: ``hulu-workstation report outbox --serve`` in its own process.

It completes interrupted sign-offs and delivers the outbox while the app is closed, as the
listener keeps receiving. One runs per outbox (it holds ``.service.lock`` there, with its pid);
the app starts it when none is running and leaves it running when it quits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

from app.reporting.outbox import outbox_dir
from dicom_net.paths import data_dir

log = logging.getLogger(__name__)
LOCK_NAME = ".service.lock"


def running_service_pid(outbox_root: Path | None = None) -> int | None:
    """The pid of the delivery service holding this outbox's lock, or None when none runs."""
    lock_path = (outbox_root or outbox_dir()) / LOCK_NAME
    try:
        handle = open(lock_path, "r+")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def ensure_delivery_service(python: str = sys.executable) -> int:
    """Start the delivery service unless one runs for the workstation's outbox; returns its pid."""
    pid = running_service_pid()
    if pid is not None:
        return pid
    log_path = data_dir() / "logs" / "delivery-service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outbox_dir().mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [python, "-m", "app.cli.main", "report", "outbox", "--serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,  # outlives the app, like the listener
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    log.info("started the report delivery service (pid %d)", process.pid)
    return process.pid
