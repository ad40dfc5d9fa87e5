"""Prediction layers on the map: names, renderers and legends from the model card, metadata."""

from __future__ import annotations

from qgis.core import (
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QColor

from .core.card import ModelCard
from .core.definitions import LAYER_MODEL_PROPERTY, LAYER_MODEL_VERSION_PROPERTY, OutputKind, Task

_MOISTURE = ("#a50026", "#f46d43", "#fee08b", "#a6d96a", "#1a9850")  # dry (red) -> moist (green)
_CONFIDENCE = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # viridis stops


def tr(text: str) -> str:
    return QCoreApplication.translate("EoMissingLayers", text)


def layer_name(card: ModelCard, kind: OutputKind) -> str:
    """E.g. 'Crop type (Europe) [S2] classes (crop_type_europe_s2)': task, modality and model at a glance."""
    what = {OutputKind.PREDICTION: tr("classes") if card.task == Task.CLASSIFICATION else card.output.unit,
            OutputKind.CONFIDENCE: tr("confidence"),
            OutputKind.PROBABILITIES: tr("class probabilities")}[kind]
    return f"{output_title(card)} [{' + '.join(card.modalities)}] {what} ({card.name})"


def output_title(card: ModelCard) -> str:
    """The output's name with a capital first letter ('LFMC' stays 'LFMC')."""
    return card.output.name[:1].upper() + card.output.name[1:]


def _ramp(colors: tuple[str, ...]) -> QgsGradientColorRamp:
    stops = [QgsGradientStop(i / (len(colors) - 1), QColor(c)) for i, c in enumerate(colors[1:-1], 1)]
    return QgsGradientColorRamp(QColor(colors[0]), QColor(colors[-1]), False, stops)


def _pseudocolor(layer: QgsRasterLayer, lo: float, hi: float, colors: tuple[str, ...], unit: str) -> None:
    ramp = _ramp(colors)
    suffix = f" {unit}" if unit else ""
    n = 5
    items = []
    for i in range(n):
        value = lo + (hi - lo) * i / (n - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, ramp.color(i / (n - 1)), f"{value:.3g}{suffix}"))
    shader = QgsColorRampShader(lo, hi, ramp, QgsColorRampShader.Type.Interpolated)
    shader.setColorRampItemList(items)
    legend = QgsColorRampLegendNodeSettings()
    legend.setSuffix(suffix)
    shader.setLegendSettings(legend)
    raster_shader = QgsRasterShader(lo, hi)
    raster_shader.setRasterShaderFunction(shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, raster_shader)
    renderer.setClassificationMin(lo)
    renderer.setClassificationMax(hi)
    layer.setRenderer(renderer)


def style_layer(layer: QgsRasterLayer, card: ModelCard, kind: OutputKind) -> None:
    """Renderer, legend, name and metadata of an output layer, all taken from the card."""
    if kind == OutputKind.PREDICTION and card.task == Task.CLASSIFICATION:
        classes = [QgsPalettedRasterRenderer.Class(c.id, QColor(c.color), c.name)
                   for c in card.output.classes]
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    elif kind == OutputKind.PREDICTION:
        lo, hi = card.output.range
        _pseudocolor(layer, lo, hi, _MOISTURE, card.output.unit)
    else:  # confidence and per-class probabilities are 0-1
        _pseudocolor(layer, 0.0, 1.0, _CONFIDENCE, "")
    layer.setName(layer_name(card, kind))
    record_model(layer, card)
    layer.triggerRepaint()


def record_model(layer: QgsRasterLayer, card: ModelCard) -> None:
    """Keep which model made the layer in its metadata (shown in Layer Properties > Metadata)."""
    meta = layer.metadata()
    meta.setTitle(layer.name())
    p = card.provenance
    abstract = tr("Predicted by '{}' ({}, version {}, method {}, trained on {}) from {} inputs.")
    meta.setAbstract(abstract.format(card.title, card.name, p.version, p.method, p.dataset,
                                     " + ".join(card.modalities)))
    meta.setKeywords({"eo_missing_qgis": [card.name, p.version, p.method, *card.modalities]})
    layer.setMetadata(meta)
    layer.setCustomProperty(LAYER_MODEL_PROPERTY, card.name)
    layer.setCustomProperty(LAYER_MODEL_VERSION_PROPERTY, p.version)


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Styles a Processing output when QGIS loads it into the project after the algorithm ran."""

    def __init__(self, card: ModelCard, kind: OutputKind):
        super().__init__()
        self.card, self.kind = card, kind

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        if isinstance(layer, QgsRasterLayer):
            style_layer(layer, self.card, self.kind)
