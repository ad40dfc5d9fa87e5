"""The predict algorithm as "Run as Batch Process" (the real batch dialog) and inside a
Graphical Modeler model (tests/data/predict_and_count.model3)."""

from __future__ import annotations

import csv
from pathlib import Path

import processing
from osgeo import gdal
from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
from processing.tools import dataobjects
from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProject, QgsRasterLayer

from .test_predict_algorithm import S1_VARS, S2_VARS, cube_sources
from .tiny_models import card_dict, tiny_onnx

MODEL3 = Path(__file__).parent / "data" / "predict_and_count.model3"


def test_batch_of_several_inputs_runs(plugin, data_dir, tmp_path, qtbot):
    models = {m: tiny_onnx(tmp_path / f"{m}.onnx", card_dict("classification", (m,), 12))
              for m in ("S1", "S2")}
    rows = [("S1", cube_sources(data_dir, S1_VARS)), ("S2", cube_sources(data_dir, S2_VARS))]
    alg = QgsApplication.processingRegistry().algorithmById("eomissing:predict")
    dialog = BatchAlgorithmDialog(alg.create())
    qtbot.addWidget(dialog)
    panel = dialog.mainWidget()
    panel.checkLoadLayersOnCompletion.setChecked(False)
    while panel.batchRowCount() < len(rows):
        panel.addRow()
    context = dataobjects.createContext()
    for row, (modality, sources) in enumerate(rows):
        layers = [QgsRasterLayer(source, source.rsplit(":", 1)[-1]) for source in sources]
        QgsProject.instance().addMapLayers(layers)  # the batch table offers the project's layers
        for name, value in (("MODEL", str(models[modality])), (modality, layers)):
            panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value, context)
        for name in ("OUTPUT", "CONFIDENCE"):
            widget = panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column[name])
            widget.setValue(str(tmp_path / f"{modality}_{name.lower()}.tif"))
    try:
        dialog.runAlgorithm()
    finally:
        QgsProject.instance().removeAllMapLayers()
    for modality, _ in rows:
        ds = gdal.Open(str(tmp_path / f"{modality}_output.tif"))
        assert ds is not None and (ds.RasterXSize, ds.RasterYSize) == (100, 100)
        assert (tmp_path / f"{modality}_confidence.tif").is_file()


def test_modeler_model_chains_predict_into_a_class_count(plugin, data_dir, tmp_path):
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL3))
    assert model.validate()[0]
    onnx_path = tiny_onnx(tmp_path / "crop_s2.onnx", card_dict("classification", ("S2",), 12))
    layers = [QgsRasterLayer(source, source.rsplit(":", 1)[-1]) for source in cube_sources(data_dir, S2_VARS)]
    QgsProject.instance().addMapLayers(layers)
    try:
        results = processing.run(model, {
            "s2": [layer.id() for layer in layers], "model": str(onnx_path),
            "predict:classes": str(tmp_path / "classes.tif"), "count:counts": str(tmp_path / "counts.csv"),
        })
    finally:
        QgsProject.instance().removeAllMapLayers()
    assert Path(results["predict:classes"]).is_file()
    with open(results["count:counts"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and "value" in rows[0]
    assert sum(int(row["count"]) for row in rows) == 100 * 100  # every pixel of the cube has a class
