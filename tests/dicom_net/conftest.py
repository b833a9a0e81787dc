"""Fixtures for the listener tests: an in-process listener on a free loopback port."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_net.archive import Archive
from dicom_net.listener import ListenerConfig, ListenerHandle, start_listener

LISTENER_AET = "HULUTEST"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def need_dcmtk(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"DCMTK tools not installed: {', '.join(missing)}")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[ListenerHandle]:
    handle = start_listener(
        ListenerConfig(aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", status_interval_s=0.1)
    )
    try:
        yield handle
    finally:
        handle.stop(grace_s=2.0)


def archive_is_empty(root: Path) -> bool:
    """No stored file, no index row, no temp leftover."""
    archive = Archive(root)
    try:
        return (
            not list(archive.studies_dir.rglob("*.dcm"))
            and archive.instance_count() == 0
            and not list(archive.tmp_dir.iterdir())
        )
    finally:
        archive.close()
