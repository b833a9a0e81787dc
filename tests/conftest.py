"""Session-wide test settings: offline model hubs, a private data dir, headless Qt by default."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TCP_NODELAY", "1")  # DCMTK and Orthanc: no 40 ms Nagle stall per C-STORE
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data/config directory: nothing touches the user's real archive."""
    home = tmp_path_factory.mktemp("hulu-home")
    monkeypatch.setenv("HULU_WORKSTATION_HOME", str(home))
    return home


def free_port() -> int:
    """A TCP port free on loopback right now (the machine is shared: never use fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
