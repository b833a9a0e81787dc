"""Persist :class:`AppSettings` and window state with QSettings (an INI file in the config dir).

The INI file lives under :func:`dicom_net.paths.config_dir` so ``HULU_WORKSTATION_HOME`` isolates
tests and sites. Stored values go through :func:`parse_settings` on load; a stored value that is
invalid (hand-edited file) falls back to its default alone, every other setting is kept, and
:attr:`SettingsStore.load_errors` says what was replaced. A model folder or TLS file that is
missing right now is kept (and listed in ``load_errors``): TLS is never silently turned off.
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
        self.load_errors: dict[str, str] = {}  # key -> why its stored value was replaced by the default

    def load(self) -> AppSettings:
        """The stored settings; each invalid stored value is replaced by its default (see ``load_errors``)."""
        stored = {}
        for key in form_keys():
            value = self.qsettings.value(key.replace(".", "/"))
            if value is not None:
                stored[key] = str(value)
        self.load_errors = {}
        for _ in range(len(stored) + 1):  # each round drops at least one bad value
            try:
                settings = parse_settings(stored, check_paths=False)
                break
            except SettingsError as exc:
                self.load_errors.update(
                    {k: f"{v} (was {stored.get(k, '')!r})" for k, v in exc.errors.items()}
                )
                kept = {k: v for k, v in stored.items() if k not in exc.errors}
                if kept == stored:  # a rule across fields failed on defaults: reset those sections
                    sections = {k.split(".")[0] for k in exc.errors}
                    kept = {k: v for k, v in stored.items() if k.split(".")[0] not in sections}
                stored = kept
        else:  # pragma: no cover - defaults always parse
            settings = AppSettings()
        try:  # paths that are missing right now are kept, and reported
            parse_settings(settings.to_form())
        except SettingsError as exc:
            self.load_errors.update(exc.errors)
        if self.load_errors:
            log.warning("stored settings invalid (%s); those use their defaults", ", ".join(self.load_errors))
        return settings

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
