"""Processing provider: the algorithms as seen in the toolbox, batch, Modeler and qgis_process."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .describe_model import DescribeModelAlgorithm
from .predict import PredictAlgorithm

ICON = str(Path(__file__).resolve().parent.parent / "resources" / "icon.svg")


class EoMissingProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "eomissing"

    def name(self) -> str:
        return "EO missing modalities"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "EO missing modalities (multi-modal teacher, single-sensor students)"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def svgIconPath(self) -> str:  # noqa: N802 - QGIS API
        return ICON

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802 - QGIS API
        """GeoTIFF only: the engine writes no other format (other names are refused)."""
        return ["tif", "tiff"]

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        self.addAlgorithm(DescribeModelAlgorithm())
        self.addAlgorithm(PredictAlgorithm())
