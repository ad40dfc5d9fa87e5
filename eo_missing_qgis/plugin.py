"""The plugin object QGIS creates: registers the Processing provider (and, later, the panel)."""

from __future__ import annotations

from qgis.core import QgsApplication

from .processing.provider import EoMissingProvider


class EoMissingPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: EoMissingProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Called by QGIS (also headless, by qgis_process) to register the algorithms."""
        self.provider = EoMissingProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
