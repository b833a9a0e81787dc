"""The window's own state between runs (geometry, splitters, last folder) in a QSettings INI file.

Kept apart from the validated settings (:mod:`app.services.settings_store`): nothing here changes
what the workstation does, only how its window looks when it opens again.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

from dicom_net.paths import config_dir


class UiState:
    """Free-form UI values under ``ui/`` in ``ui-state.ini``."""

    def __init__(self, qsettings: QSettings | None = None):
        if qsettings is None:
            folder = config_dir()
            folder.mkdir(parents=True, exist_ok=True)
            qsettings = QSettings(str(folder / "ui-state.ini"), QSettings.Format.IniFormat)
        self.qsettings = qsettings

    def value(self, name: str, default: object = None) -> object:
        return self.qsettings.value(f"ui/{name}", default)

    def set_value(self, name: str, value: object) -> None:
        self.qsettings.setValue(f"ui/{name}", value)

    def bytes_value(self, name: str) -> QByteArray | None:
        value = self.qsettings.value(f"ui/{name}")
        return value if isinstance(value, QByteArray) else None

    def sync(self) -> None:
        self.qsettings.sync()
