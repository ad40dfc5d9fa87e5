"""The Processing algorithm "Predict from available layers", in-process and via qgis_process."""

from __future__ import annotations

import json

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)

from eo_missing_qgis.core.definitions import BANDS, Modality

from .tiny_models import card_dict, tiny_onnx

S2_VARS = [f"S2-L2A-{b}" for b in BANDS[Modality.S2]]
S1_VARS = ["S1-SIGMA0-VV", "S1-SIGMA0-VH"]


def cube_sources(data_dir, variables) -> list[str]:
    cube = data_dir / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
    return [f'NETCDF:"{cube}":{v}' for v in variables]


@pytest.fixture(scope="module")
def crop_s2_model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("m") / "crop_s2.onnx", card_dict("classification", ("S2",), 12))


def test_custom_model_on_the_real_cube_loads_styled_layers(plugin, data_dir, crop_s2_model, tmp_path):
    params = {"MODEL": str(crop_s2_model), "S2": cube_sources(data_dir, S2_VARS),
              "OUTPUT": str(tmp_path / "classes.tif"), "CONFIDENCE": str(tmp_path / "confidence.tif")}
    try:
        results = processing.runAndLoadResults("eomissing:predict", params)
        assert results["MODEL_NAME"] == "tiny_classification_s2"
        assert results["PROVIDER"] == "CPUExecutionProvider"
        assert (tmp_path / "classes.tif").is_file() and (tmp_path / "confidence.tif").is_file()
        layers = {lyr.source(): lyr for lyr in QgsProject.instance().mapLayers().values()}
        classes = layers[str(tmp_path / "classes.tif")]
        assert isinstance(classes.renderer(), QgsPalettedRasterRenderer)
        assert classes.name().startswith("Crop type [S2] classes")
        assert "confidence" in layers[str(tmp_path / "confidence.tif")].name()
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_lfmc_window_takes_latest_months_or_first_step(plugin, data_dir, tmp_path):
    model = tiny_onnx(tmp_path / "lfmc.onnx", card_dict("regression", ("S1",), steps=3))
    base = {"MODEL": str(model), "S1": cube_sources(data_dir, S1_VARS)}
    latest = processing.run("eomissing:predict", {**base, "OUTPUT": str(tmp_path / "latest.tif")})
    first = processing.run("eomissing:predict",
                           {**base, "FIRST_STEP": 1, "OUTPUT": str(tmp_path / "first.tif")})
    a, b = (gdal.Open(r["OUTPUT"]).ReadAsArray() for r in (latest, first))
    assert a.shape == (100, 100) and not np.array_equal(a, b)  # other months, other predictions
    with pytest.raises(QgsProcessingException, match="time steps"):
        processing.run("eomissing:predict", {**base, "FIRST_STEP": 11, "OUTPUT": str(tmp_path / "late.tif")})


@pytest.mark.parametrize(("params", "message"), [
    ({}, "Give Sentinel-1 layers, Sentinel-2 layers, or both"),
    ({"S2": "S2_4"}, "missing: S2 B06"),
    ({"S2": "S2_ALL", "S2_UNITS": 1}, r"as 'reflectance \(0-1\)'; declare 'reflectance x 10000"),
])
def test_clear_errors(plugin, data_dir, crop_s2_model, tmp_path, params, message):
    if params.get("S2") == "S2_4":
        params = {"S2": cube_sources(data_dir, S2_VARS[:4])}
    if params.get("S2") == "S2_ALL":  # DN declared as reflectance 0-1 (issue 11)
        params = {**params, "S2": cube_sources(data_dir, S2_VARS)}
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("eomissing:predict", {"MODEL": str(crop_s2_model), **params,
                                             "OUTPUT": str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


def test_qgis_process_on_the_real_cube(qgis_process, data_dir, crop_s2_model, tmp_path):
    args = ["run", "eomissing:predict", "--json", "--", f"MODEL={crop_s2_model}",
            f"OUTPUT={tmp_path / 'out.tif'}", f"CONFIDENCE={tmp_path / 'conf.tif'}"]
    args += [f"S2={s}" for s in cube_sources(data_dir, S2_VARS)]
    report = json.loads(qgis_process(*args).stdout)
    assert report["results"]["PROVIDER"] == "CPUExecutionProvider"
    layer = QgsRasterLayer(str(tmp_path / "out.tif"))
    assert layer.isValid() and (layer.width(), layer.height()) == (100, 100)
    assert layer.crs().authid() == "EPSG:32631"
    assert (tmp_path / "conf.tif").is_file()


@pytest.mark.parametrize("combo", [("S1",), ("S2",), ("S1", "S2")], ids=["S1", "S2", "S1+S2"])
@pytest.mark.parametrize(("task", "family"), [("lfmc", "lfmc"), ("crop_type", "crop_type_europe"),
                                            ("cropland", "cropland")])
def test_bundled_model_is_chosen_for_each_combination(plugin, data_dir, tmp_path, task, family, combo):
    """On the Belgian cube the crop-type model is the European one (chosen by the input's place)."""
    from eo_missing_qgis.core.model_index import load_index, tasks

    params = {"TASK": tasks(load_index())[task], "OUTPUT": str(tmp_path / "out.tif")}
    for modality in combo:
        params[modality] = cube_sources(data_dir, S1_VARS if modality == "S1" else S2_VARS)
    feedback = QgsProcessingFeedback()
    results = processing.run("eomissing:predict", params, feedback=feedback)
    assert results["MODEL_NAME"] == f"{family}_{'_'.join(combo).lower()}"
    assert "Chosen:" in feedback.textLog() and "CPUExecutionProvider" in feedback.textLog()
    assert gdal.Open(results["OUTPUT"]).RasterXSize == 100


def test_incomplete_s2_runs_the_bundled_s1_model_and_says_why(plugin, data_dir, tmp_path):
    """Issue 11: complete S1 and four S2 bands: the S1 student runs instead of a refusal."""
    params = {"TASK": "Crop type", "S1": cube_sources(data_dir, S1_VARS),
              "S2": cube_sources(data_dir, S2_VARS[:4]), "OUTPUT": str(tmp_path / "out.tif")}
    feedback = QgsProcessingFeedback()
    results = processing.run("eomissing:predict", params, feedback=feedback)
    assert results["MODEL_NAME"] == "crop_type_europe_s1"
    assert "its Sentinel-2 layers are incomplete (missing: S2 B06 (all 12 time steps)" in feedback.textLog()
