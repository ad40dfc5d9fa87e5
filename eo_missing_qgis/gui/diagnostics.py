"""The "Copy diagnostics" action, shared by the panel's button and the plugin menu."""

from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR
from qgis.PyQt.QtWidgets import QApplication

from ..core.diagnostics import diagnostics_text


def copy_diagnostics() -> str:
    """Put the diagnostics, with this QGIS's and Qt's versions, on the clipboard; returns the text."""
    text = diagnostics_text(f"{Qgis.version()} (Qt {QT_VERSION_STR}, PyQt {PYQT_VERSION_STR})")
    QApplication.clipboard().setText(text)
    return text
