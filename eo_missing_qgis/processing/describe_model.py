"""Processing algorithm "Describe model": show the model card of an ONNX file."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..core.card import ModelCardError, card_to_html, card_to_text, read_card
from ..core.model_index import load_index
from .base import EoMissingAlgorithm

FILE = "ONNX file below"


class DescribeModelAlgorithm(EoMissingAlgorithm):
    ID, DISPLAY_NAME, GROUP, GROUP_ID = "describemodel", "Describe model", "Models", "models"
    INTRO = ("Reads the model card embedded in an ONNX model and reports what the model expects "
             "(sensors, bands in order, units, time steps, scaling) and what it produces (classes "
             "and colours, or a regression unit), with its provenance and test metrics.")
    BUNDLED, MODEL = "BUNDLED", "MODEL"
    OUTPUT_HTML = "OUTPUT_HTML"
    CARD_JSON = "CARD_JSON"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.bundled = {m.title: m.file for m in load_index()}
        bundled = QgsProcessingParameterEnum(self.BUNDLED, self.tr("Bundled model"),
                                             options=[*self.bundled, FILE], defaultValue=FILE)
        bundled.setUsesStaticStrings(True)
        self.addParameter(bundled)
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model (ONNX file)"), extension="onnx", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Card as HTML"), self.tr("HTML files (*.html)"),
            optional=True, createByDefault=False))
        self.set_help({
            self.BUNDLED: self.tr("One of the models that come with the plugin, or '{}'.").format(FILE),
            self.MODEL: self.tr("An ONNX file exported by this project's training package."),
            self.OUTPUT_HTML: self.tr("Optional file to write the card to as a readable page."),
        })
        self.addOutput(QgsProcessingOutputString(self.CARD_JSON, self.tr("Model card (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        choice = self.enum_text(parameters, self.BUNDLED, context)
        path = str(self.bundled[choice]) if choice in self.bundled else self.parameterAsFile(
            parameters, self.MODEL, context)
        if not path:
            raise QgsProcessingException(self.tr("Choose a bundled model or give an ONNX file."))
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
