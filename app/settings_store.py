"""Persist :class:`AppSettings` and window state with QSettings (an INI file in the config dir).

The INI file lives under :func:`dicom_net.paths.config_dir` so ``HULU_WORKSTATION_HOME`` isolates
tests and sites. Stored values go through :func:`parse_settings` on load, so a hand-edited,
invalid file falls back to defaults for the whole form instead of half-applying it.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, QSettings

from app.settings_model import AppSettings, SettingsError, form_keys, parse_settings
from dicom_net.paths import config_dir

log = logging.getLogger(__name__)


def open_qsettings() -> QSettings:
    """The workstation's QSettings, an INI file inside the per-user config directory."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return QSettings(str(folder / "workstation.ini"), QSettings.Format.IniFormat)


class SettingsStore:
    """Load/save the validated settings plus free-form UI state (geometry, last folder)."""

    def __init__(self, qsettings: QSettings | None = None):
        self.qsettings = qsettings or open_qsettings()

    def load(self) -> AppSettings:
        stored = {}
        for key in form_keys():
            value = self.qsettings.value(key.replace(".", "/"))
            if value is not None:
                stored[key] = str(value)
        try:
            return parse_settings(stored)
        except SettingsError as exc:
            log.warning("stored settings invalid (%s); using defaults", ", ".join(exc.errors))
            return AppSettings()

    def save(self, settings: AppSettings) -> None:
        for key, value in settings.to_form().items():
            self.qsettings.setValue(key.replace(".", "/"), value)
        self.qsettings.sync()

    def apply_form(self, form: dict[str, str]) -> AppSettings:
        """Validate the whole form against the current settings; save only if all is valid."""
        settings = parse_settings(form, base=self.load())
        self.save(settings)
        return settings

    # UI state: layout, splitter sizes, window geometry, last import folder.
    def ui_value(self, name: str, default: object = None) -> object:
        return self.qsettings.value(f"ui/{name}", default)

    def set_ui_value(self, name: str, value: object) -> None:
        self.qsettings.setValue(f"ui/{name}", value)

    def ui_bytes(self, name: str) -> QByteArray | None:
        value = self.qsettings.value(f"ui/{name}")
        return value if isinstance(value, QByteArray) else None
