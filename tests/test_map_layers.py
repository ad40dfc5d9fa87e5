"""Output layers are styled from the card: paletted classes, unit ramps, names, metadata."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import (
    QgsLayerTreeLayer,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtCore import Qt

from eo_missing_qgis.core.card import card_from_dict
from eo_missing_qgis.map_layers import layer_name, style_layer

from .tiny_models import card_dict


def _geotiff(path, array, gdal_type) -> QgsRasterLayer:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, gdal_type)
    ds.SetGeoTransform((664000, 10, 0, 5612120, 0, -10))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(array)
    ds = None
    layer = QgsRasterLayer(str(path), "raw")
    assert layer.isValid()
    return layer


def _legend_labels(layer) -> list[str]:
    node = QgsLayerTreeLayer(layer)
    return [n.data(Qt.DisplayRole) for n in layer.legend().createLayerTreeModelLegendNodes(node)]


def test_class_raster_gets_card_classes(qgis_app, tmp_path):
    card = card_from_dict(card_dict("classification", ("S1", "S2")))
    layer = _geotiff(tmp_path / "c.tif", np.array([[1, 2], [3, 0]], np.uint8), gdal.GDT_Byte)
    style_layer(layer, card, "prediction")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == [
        (1, "cereals", "#e6c229"), (2, "maize", "#f17105"), (3, "grassland", "#6aa84f")]
    assert {"cereals", "maize", "grassland"} <= set(_legend_labels(layer))
    assert layer.name() == layer_name(card, "prediction")
    assert layer.name() == "Crop type [S1 + S2] classes (tiny_classification_s1_s2)"
    assert card.name in layer.metadata().abstract()
    assert layer.customProperty("eo_missing_qgis/model_version") == "0.0.1"


@pytest.mark.parametrize(("task", "kind", "lo", "hi", "suffix"), [
    ("regression", "prediction", 30.0, 320.0, " %"), ("classification", "confidence", 0.0, 1.0, "")])
def test_continuous_rasters_get_a_ramp_with_unit(qgis_app, tmp_path, task, kind, lo, hi, suffix):
    card = card_from_dict(card_dict(task))
    layer = _geotiff(tmp_path / "r.tif", np.full((3, 3), 100.0, np.float32), gdal.GDT_Float32)
    style_layer(layer, card, kind)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (lo, hi)
    shader = renderer.shader().rasterShaderFunction()
    assert shader.legendSettings().suffix() == suffix
    items = shader.colorRampItemList()
    assert items[0].label == f"{lo:.3g}{suffix}" and items[-1].label == f"{hi:.3g}{suffix}"
    assert ("LFMC [S2] %" if task == "regression" else "confidence") in layer.name()
