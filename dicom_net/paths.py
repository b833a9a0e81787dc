"""Where the workstation keeps its data by default (overridable for tests and sites)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

APP_NAME = "hulu-workstation"


def data_dir() -> Path:
    """The per-user data directory, or ``$HULU_WORKSTATION_HOME`` when set."""
    override = os.environ.get("HULU_WORKSTATION_HOME")
    return Path(override) if override else Path(user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """The per-user configuration directory (PACS nodes, RIS endpoint)."""
    override = os.environ.get("HULU_WORKSTATION_HOME")
    return Path(override) / "config" if override else Path(user_config_dir(APP_NAME, appauthor=False))


def default_archive_dir() -> Path:
    """The embedded default archive: files plus an SQLite index inside the data directory."""
    return data_dir() / "archive"
