"""Processing algorithm "Describe model": show the model card of an ONNX file."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.card_report import card_to_html, card_to_text
from ..core.model_card import ModelCardError, read_card


class DescribeModelAlgorithm(QgsProcessingAlgorithm):
    MODEL = "MODEL"
    OUTPUT_HTML = "OUTPUT_HTML"
    CARD_JSON = "CARD_JSON"

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("DescribeModelAlgorithm", text)

    def name(self) -> str:
        return "describemodel"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return self.tr("Describe model")

    def group(self) -> str:
        return self.tr("Models")

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return "models"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return self.tr(
            "Reads the model card embedded in an ONNX model and reports what the model expects "
            "(sensors, bands in order, units, time steps, scaling) and what it produces (classes "
            "and colours, or a regression unit), with its provenance and test metrics.\n\n"
            "Model: an ONNX file exported by this project's training package.\n"
            "Card as HTML: optional file to write the card to as a readable page."
        )

    def createInstance(self) -> DescribeModelAlgorithm:  # noqa: N802 - QGIS API
        return DescribeModelAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model (ONNX file)"), extension="onnx"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Card as HTML"), self.tr("HTML files (*.html)"),
            optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputString(self.CARD_JSON, self.tr("Model card (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        path = self.parameterAsFile(parameters, self.MODEL, context)
        try:
            card = read_card(path)
        except ModelCardError as exc:
            raise QgsProcessingException(str(exc)) from None
        for line in card_to_text(card).splitlines():
            feedback.pushInfo(line)
        results = {self.CARD_JSON: card.to_json()}
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html_path:
            Path(html_path).write_text(card_to_html(card), encoding="utf-8")
            results[self.OUTPUT_HTML] = html_path
        return results
