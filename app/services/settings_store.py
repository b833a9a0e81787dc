"""Persist :class:`AppSettings` in an INI file in the config dir, without Qt.

The file (``settings.ini`` under :func:`dicom_net.paths.config_dir`, so ``HULU_WORKSTATION_HOME``
isolates tests and sites) holds one section per settings group and is replaced atomically on save.
Stored values go through :func:`parse_settings` on load; a stored value that is invalid (hand-edited
file) falls back to its default alone, every other setting is kept, and
:attr:`SettingsStore.load_errors` says what was replaced. A model folder or TLS file that is
missing right now is kept (and listed in ``load_errors``): TLS is never silently turned off.
The window's own state (geometry, splitters, last folder) is not a setting: :mod:`app.gui.ui_state`.
"""

from __future__ import annotations

import configparser
import io
import logging
from pathlib import Path

from app.services.settings_model import AppSettings, SettingsError, form_keys, parse_settings
from dicom_net.paths import config_dir
from hulu_common.atomic import write_bytes_atomic

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.ini"


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


class SettingsStore:
    """Load/save the validated settings (``group.key`` form keys <-> ``[group] key`` in the file)."""

    def __init__(self, path: Path | None = None):
        self.path = path or settings_path()
        self.load_errors: dict[str, str] = {}  # key -> why its stored value was replaced by the default

    def stored_form(self) -> dict[str, str]:
        """The raw stored values by form key (unknown keys and unreadable files are ignored)."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeError, configparser.Error) as exc:
            log.warning("settings file %s unreadable (%s); defaults are used", self.path, exc)
            return {}
        stored = {}
        for key in form_keys():
            section, _, name = key.partition(".")
            if parser.has_option(section, name):
                stored[key] = parser.get(section, name)
        return stored

    def write_values(self, values: dict[str, str]) -> None:
        """Store raw ``form key -> text`` values over the file's current ones (no validation)."""
        parser = configparser.ConfigParser(interpolation=None)
        for key, value in {**self.stored_form(), **values}.items():
            section, _, name = key.partition(".")
            if not parser.has_section(section):
                parser.add_section(section)
            parser.set(section, name, value)
        text = io.StringIO()
        parser.write(text)
        write_bytes_atomic(self.path, text.getvalue().encode("utf-8"))

    def load(self) -> AppSettings:
        """The stored settings; each invalid stored value is replaced by its default (see ``load_errors``)."""
        stored = self.stored_form()
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
        self.write_values(settings.to_form())

    def apply_form(self, form: dict[str, str]) -> AppSettings:
        """Validate the whole form against the current settings; save only if all is valid."""
        settings = parse_settings(form, base=self.load())
        self.save(settings)
        return settings
