"""Dark reading-room theme and high-DPI set-up for the QApplication."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

STYLES_DIR = Path(__file__).resolve().parents[2] / "resources" / "styles"


def configure_high_dpi() -> None:
    """Call before the QApplication exists: fractional scale factors pass through unrounded."""
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


def dark_palette() -> QPalette:
    p = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#1b1d20",
        QPalette.ColorRole.WindowText: "#c9ccd1",
        QPalette.ColorRole.Base: "#141618",
        QPalette.ColorRole.AlternateBase: "#191b1e",
        QPalette.ColorRole.Text: "#c9ccd1",
        QPalette.ColorRole.Button: "#2a2e33",
        QPalette.ColorRole.ButtonText: "#c9ccd1",
        QPalette.ColorRole.Highlight: "#2f5d8a",
        QPalette.ColorRole.HighlightedText: "#eef1f4",
        QPalette.ColorRole.ToolTipBase: "#2a2e33",
        QPalette.ColorRole.ToolTipText: "#e3e6ea",
        QPalette.ColorRole.PlaceholderText: "#6b7078",
        QPalette.ColorRole.Link: "#5d9bd5",
    }
    for role, colour in colours.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7078"))
    return p


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet((STYLES_DIR / "dark.qss").read_text())
