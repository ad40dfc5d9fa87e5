"""Saying what a layer holds outside the CLI: multi-sensor stacks in Processing, the per-layer
band and first-step mapping (dialog, batch, Modeler and qgis_process take the same text), and the
first time step honoured for stacked layers."""

from __future__ import annotations

import json

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.model_index import load_index, tasks
from eo_missing_qgis.core.prediction import LayerMapping, parse_mapping
from eo_missing_qgis.core.units import PRESETS
from tests.engine_data import S1_VARS, S2_VARS, s2_stack, variable, write_tif
from tests.stack_data import ee_stack
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx
from tests.tolerances import assert_same_classes

S2_X10000 = list(PRESETS["reflectance"]).index("reflectance x 10000 (L2A DN)") + 1  # 0 is auto


@pytest.fixture(scope="module")
def plain_stack(data_dir, tmp_path_factory) -> str:
    """The cube's S2 as one stacked layer, month-major, whose names say nothing."""
    return write_tif(tmp_path_factory.mktemp("plain") / "export_2021.tif",
                     s2_stack(data_dir).reshape(108, 100, 100), nodata=65535)


@pytest.fixture(scope="module")
def lfmc_s2(tmp_path_factory) -> str:
    return str(tiny_onnx(tmp_path_factory.mktemp("m") / "lfmc.onnx", card_dict("regression", ("S2",), 3)))


def cube(data_dir, variables: dict[str, str]) -> list[str]:
    return [variable(data_dir, v) for v in variables.values()]


def read(path: str) -> np.ndarray:
    return gdal.Open(path).ReadAsArray()


def test_mapping_text_is_parsed_or_refused_in_plain_words():
    assert parse_mapping('NETCDF:"a.nc":x: B02, B03 @ 6\nb.tif: @2; c: B8A') == {
        'NETCDF:"a.nc":x': LayerMapping(("B02", "B03"), 6), "b.tif": LayerMapping((), 2),
        "c": LayerMapping(("B8A",), 0)}
    with pytest.raises(InputError, match="cannot read the layer mapping 'B02,B03'"):
        parse_mapping("B02,B03")
    for bad in ("a.tif: B02 @ first", "a.tif: @ 0"):
        with pytest.raises(InputError, match=r"first time step of 'a\.tif' must be a whole number"):
            parse_mapping(bad)


def predict(tmp_path, name: str, **params) -> np.ndarray:
    """Run the algorithm writing ``name``.tif; returns the prediction."""
    result = processing.run("eomissing:predict", {**params, "OUTPUT": str(tmp_path / f"{name}.tif")})
    return read(result["OUTPUT"])


@pytest.fixture(scope="module")
def stack(data_dir, tmp_path_factory) -> str:
    return ee_stack(data_dir, tmp_path_factory.mktemp("ee") / "ee_export.tif")


def test_multi_sensor_stack_as_s1_reads_only_its_s1_bands(plugin, data_dir, stack, tmp_path):
    """Given as S1 it used to be read as 206 months of VV, and a map was written."""
    task = tasks(load_index())["crop_type"]
    got = processing.run("eomissing:predict", {"TASK": task, "S1": [stack],
                                               "OUTPUT": str(tmp_path / "s1.tif")})
    assert got["MODEL_NAME"] == "crop_type_europe_s1"
    expected = predict(tmp_path, "cube", TASK=task, S1=cube(data_dir, S1_VARS), PROBABILITIES=True)
    assert_same_classes(read(got["OUTPUT"]), expected, read(str(tmp_path / "cube_probabilities.tif")))


def test_multi_sensor_stack_in_both_lists_gives_the_cube_map(plugin, data_dir, stack, tmp_path):
    task = tasks(load_index())["crop_type"]
    feedback = QgsProcessingFeedback()
    got = processing.run("eomissing:predict", {"TASK": task, "S1": [stack], "S2": [stack],
                                               "S2_UNITS": S2_X10000, "OUTPUT": str(tmp_path / "stack.tif")},
                         feedback=feedback)
    assert got["MODEL_NAME"] == "crop_type_europe_s1_s2"
    expected = predict(tmp_path, "cube", TASK=task, S1=cube(data_dir, S1_VARS), S2=cube(data_dir, S2_VARS),
                       PROBABILITIES=True)
    assert_same_classes(read(got["OUTPUT"]), expected, read(str(tmp_path / "cube_probabilities.tif")))


def test_layer_mapping_says_the_bands_of_an_unnamed_stack(plugin, data_dir, plain_stack, lfmc_s2, tmp_path):
    said = r"export_2021: nothing .* say which band.*'Bands and first time step per layer'"
    with pytest.raises(QgsProcessingException, match=said):
        predict(tmp_path, "none", MODEL=lfmc_s2, S2=[plain_stack])
    mapped = predict(tmp_path, "mapped", MODEL=lfmc_s2, S2=[plain_stack],
                     LAYER_BANDS=f"export_2021: {','.join(S2_BANDS)}")
    expected = predict(tmp_path, "cube", MODEL=lfmc_s2, S2=cube(data_dir, S2_VARS))
    np.testing.assert_allclose(mapped, expected, rtol=1e-5)


def test_first_step_is_honoured_for_stacked_layers(plugin, data_dir, plain_stack, lfmc_s2, tmp_path):
    bands = f"export_2021.tif: {','.join(S2_BANDS)}"
    base = {"MODEL": lfmc_s2, "S2": [plain_stack]}
    own = predict(tmp_path, "own", **base, LAYER_BANDS=f"{bands} @ 1")
    shared = predict(tmp_path, "shared", **base, LAYER_BANDS=bands, FIRST_STEP=1)
    latest = predict(tmp_path, "latest", **base, LAYER_BANDS=bands)
    expected = predict(tmp_path, "cube", MODEL=lfmc_s2, S2=cube(data_dir, S2_VARS), FIRST_STEP=1)
    np.testing.assert_allclose(own, expected, rtol=1e-5)
    np.testing.assert_array_equal(own, shared)
    assert not np.allclose(own, latest)
    with pytest.raises(QgsProcessingException, match=r"export_2021 has 12 .*from step 11 on it has 2"):
        predict(tmp_path, "late", **base, LAYER_BANDS=f"{bands} @ 11")
    with pytest.raises(QgsProcessingException, match=r"names 'other\.tif', which is none of the layers"):
        predict(tmp_path, "other", **base, LAYER_BANDS=f"other.tif: {','.join(S2_BANDS)}")


def test_qgis_process_takes_the_mapping(qgis_process, plain_stack, lfmc_s2, tmp_path):
    bands = ",".join(S2_BANDS)
    out = tmp_path / "qp.tif"
    report = json.loads(qgis_process("run", "eomissing:predict", "--json", "--", f"MODEL={lfmc_s2}",
                                     f"S2={plain_stack}", f"LAYER_BANDS=export_2021.tif: {bands} @ 2",
                                     f"OUTPUT={out}").stdout)
    assert report["results"]["OUTPUT"] == str(out) and read(str(out)).shape == (100, 100)
    bad = qgis_process("run", "eomissing:predict", "--", f"MODEL={lfmc_s2}", f"S2={plain_stack}",
                       "LAYER_BANDS=B02,B03", f"OUTPUT={tmp_path / 'bad.tif'}", check=False)
    assert bad.returncode != 0 and "cannot read the layer mapping 'B02,B03'" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad.tif").exists()


def test_cli_and_processing_count_time_steps_the_same_way(plugin, data_dir, lfmc_s2, tmp_path):
    """The CLI used to refuse a 12-step layer for a 3-step model; Processing took the latest."""
    from eo_missing_qgis.core.cli import main

    layers = cube(data_dir, S2_VARS)
    for first, index in ((0, []), (4, ["--time-index", "3"])):
        args = ["predict", "--model", lfmc_s2, "--out", str(tmp_path / f"cli{first}.tif"), "--quiet"]
        for layer in layers:
            args += ["--input", layer, *index]
        assert main(args) == 0
        expected = predict(tmp_path, f"qgis{first}", MODEL=lfmc_s2, S2=layers, FIRST_STEP=first)
        np.testing.assert_array_equal(read(str(tmp_path / f"cli{first}.tif")), expected)
    assert not np.allclose(read(str(tmp_path / "cli0.tif")), read(str(tmp_path / "cli4.tif")))
