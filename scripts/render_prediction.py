"""Render styled prediction GeoTIFFs to PNG (map + legend), as QGIS shows them.

Usage: python scripts/render_prediction.py MODEL.onnx OUT.png RASTER.tif [RASTER_confidence.tif ...]
Each raster is styled from the model card exactly as the plugin styles layers it adds to the map
(`eo_missing_qgis.map_layers.style_layer`), then laid out side by side with its legend.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qgis.core import (
    QgsApplication,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsLegendStyle,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsUnitTypes,
)
from qgis.PyQt.QtGui import QFont

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.map_layers import output_title, style_layer

PANEL_W, MAP_H, LEGEND_ROW = 90.0, 90.0, 6.5  # mm


def render(model: Path, png: Path, rasters: list[Path]) -> None:
    card = read_card(model)
    project = QgsProject.instance()
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    page = layout.pageCollection().page(0)
    legend_h = LEGEND_ROW * (len(card.output.classes) or 5) + 15
    width = max(PANEL_W * len(rasters), 150.0)  # room for the title on one line
    page.setPageSize(QgsLayoutSize(width + 10, MAP_H + legend_h + 25))
    title = QgsLayoutItemLabel(layout)
    title.setText(f"{card.title} — {' + '.join(card.modalities)}")
    title.setFont(QFont("DejaVu Sans", 12))
    title.attemptMove(QgsLayoutPoint(5, 3, QgsUnitTypes.LayoutMillimeters))
    title.attemptResize(QgsLayoutSize(width, 10))
    layout.addLayoutItem(title)
    for i, raster in enumerate(rasters):
        kind = "confidence" if raster.stem.endswith("_confidence") else "prediction"
        layer = QgsRasterLayer(str(raster), raster.stem)
        if not layer.isValid():
            raise SystemExit(f"cannot open {raster}")
        style_layer(layer, card, kind)
        project.addMapLayer(layer, False)
        project.setCrs(layer.crs())
        x = 5 + i * PANEL_W
        item = QgsLayoutItemMap(layout)
        item.setLayers([layer])
        item.setCrs(layer.crs())
        item.attemptMove(QgsLayoutPoint(x, 15, QgsUnitTypes.LayoutMillimeters))
        item.attemptResize(QgsLayoutSize(PANEL_W - 5, MAP_H))
        item.setExtent(layer.extent())
        item.setFrameEnabled(True)
        layout.addLayoutItem(item)
        legend = QgsLayoutItemLegend(layout)
        legend.setLinkedMap(item)
        legend.setAutoUpdateModel(False)
        node = legend.model().rootGroup().addLayer(layer)
        node.setName({"prediction": output_title(card), "confidence": "Confidence"}[kind]
                     + (f" ({card.output.unit})" if kind == "prediction" and card.output.unit else ""))
        # Drop the "Band 1: ..." line QGIS puts above the legend entries of a one-band raster.
        entries = legend.model().layerLegendNodes(node)
        QgsMapLayerLegendUtils.setLegendNodeOrder(node, list(range(1, len(entries))))
        legend.model().refreshLayerLegend(node)
        legend.setStyleFont(QgsLegendStyle.Title, QFont("DejaVu Sans", 9))
        legend.attemptMove(QgsLayoutPoint(x, 17 + MAP_H, QgsUnitTypes.LayoutMillimeters))
        layout.addLayoutItem(legend)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 110
    settings.generateWorldFile = False
    settings.exportMetadata = False
    result = QgsLayoutExporter(layout).exportToImage(str(png), settings)
    if result != QgsLayoutExporter.Success:
        raise SystemExit(f"rendering {png} failed ({result})")
    project.removeAllMapLayers()


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    render(Path(argv[0]), Path(argv[1]), [Path(p) for p in argv[2:]])


if __name__ == "__main__":
    main(sys.argv[1:])
