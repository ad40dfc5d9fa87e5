"""openEO: the UDF run by the openeo package's local UDF execution on the real cube as a
DataArray (t, bands, y, x), equal to the local engine; and the process graph the CLI writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from eo_missing_qgis.core import cli
from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import CUBE_TRANSFORM, S1_VARS, S2_VARS, cube_path, read_variable
from tests.test_engine_spatial import spatial_card, spatial_onnx
from tests.tiny_models import card_dict, tiny_onnx
from tests.tolerances import assert_same_classes

openeo = pytest.importorskip("openeo")
xr = pytest.importorskip("xarray")

from openeo.udf import execute_local_udf  # noqa: E402

from eo_missing_qgis.core.scale.openeo_graph import UDF_FILE, build_graph  # noqa: E402

#: The bundled models take the month and latitude/longitude, which the UDF does not compute yet
#: (the graph refuses them); a per-pixel S1 + S2 model without those inputs stands in for them.
BUNDLED = "eo_missing_qgis/models/crop_type_europe_s1_s2.onnx"


@pytest.fixture(scope="module")
def per_pixel(tmp_path_factory) -> str:
    return str(tiny_onnx(tmp_path_factory.mktemp("m") / "s1s2.onnx", card_dict(modalities=("S1", "S2"))))
ENCODINGS = {"S1": "WorldCereal DN (20 log10 DN - 83, nodata 65535)", "S2": "reflectance x 10000 (L2A DN)"}


@pytest.fixture(scope="module")
def cube(data_dir) -> xr.DataArray:
    """The cube as an openEO backend hands it to a UDF: (t, bands, y, x), openEO band names."""
    names = {**S1_VARS, **S2_VARS}
    values = np.stack([read_variable(data_dir, v)[0] for v in names.values()], axis=1)
    return xr.DataArray(values, dims=("t", "bands", "y", "x"), coords={
        "t": np.array([f"2021-{m:02d}-01" for m in range(1, 13)], dtype="datetime64[ns]"),
        "bands": list(names),
        "y": CUBE_TRANSFORM.f + CUBE_TRANSFORM.e * (np.arange(100) + 0.5),
        "x": CUBE_TRANSFORM.c + CUBE_TRANSFORM.a * (np.arange(100) + 0.5)})


def run_udf(cube: xr.DataArray, context: dict) -> xr.DataArray:
    udf = openeo.UDF(UDF_FILE.read_text(encoding="utf-8"), runtime="Python", context=context)
    return execute_local_udf(udf, cube).get_datacube_list()[0].get_array()


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.mark.parametrize("kind", ["per_pixel", "spatial"])
def test_udf_equals_the_engine(tmp_path, data_dir, cube, kind, per_pixel):
    model = per_pixel if kind == "per_pixel" else spatial_onnx(tmp_path / "s.onnx", spatial_card())
    local = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "local.tif",
                      options=RunOptions(write_probabilities=True))
    out = run_udf(cube, {"model": model, "encodings": ENCODINGS, "probabilities": True})
    classes = [c.name for c in read_card(model).output.classes]
    assert out.dims == ("t", "bands", "y", "x") and out.sizes["t"] == 1
    assert list(out["bands"].values) == ["prediction", "confidence", *(f"probability {c}" for c in classes)]
    np.testing.assert_array_equal(out["x"], cube["x"])
    expected = read(local.outputs["probabilities"])
    got = out.values[0]
    np.testing.assert_allclose(got[2:], expected, atol=2e-5)
    np.testing.assert_allclose(got[1], read(local.outputs["confidence"])[0], atol=2e-5)
    assert_same_classes(got[0].astype(np.uint8), read(local.outputs["prediction"])[0], expected)
    assert int((got[0] > 0).sum()) == local.pixels_predicted


def test_udf_says_which_bands_are_missing(cube):
    with pytest.raises(InputError, match="lack bands model crop_type_europe_s1_s2 needs: S1 VH"):
        run_udf(cube.drop_sel(bands="VH"), {"model": BUNDLED, "encodings": ENCODINGS})


def test_udf_logs_a_wrong_encoding(cube, caplog, per_pixel):
    with caplog.at_level("WARNING"):
        run_udf(cube, {"model": per_pixel, "encodings": {**ENCODINGS, "S2": "reflectance (0-1)"}})
    assert any("look like reflectance x 10000, not 0-1" in r.getMessage() for r in caplog.records)


def test_graph_runs_the_udf_on_monthly_composites(tmp_path):
    model = spatial_onnx(tmp_path / "s.onnx", spatial_card())
    out = tmp_path / "graph.json"
    assert cli.main(["openeo-graph", "--model", model, "--model-url", "https://example.org/m.onnx",
                     "--bbox", "4.6", "50.6", "4.7", "50.7", "--start", "2021-03", "--out", str(out)]) == 0
    nodes = json.loads(out.read_text())["process_graph"]
    by_process: dict[str, list[dict]] = {}
    for node in nodes.values():
        by_process.setdefault(node["process_id"], []).append(node["arguments"])
    loads = {a["id"]: a for a in by_process["load_collection"]}
    assert set(loads) == {"SENTINEL2_L2A", "SENTINEL1_GRD"}
    assert loads["SENTINEL2_L2A"]["temporal_extent"] == ["2021-03-01", "2022-03-01"]
    assert loads["SENTINEL1_GRD"]["bands"] == ["VV", "VH"]
    assert by_process["sar_backscatter"][0]["coefficient"] == "sigma0-ellipsoid"  # linear power
    assert all(a["period"] == "month" for a in by_process["aggregate_temporal_period"])
    reducer = by_process["aggregate_temporal_period"][0]["reducer"]["process_graph"]
    assert [n["process_id"] for n in reducer.values()] == ["median"]
    (hood,) = by_process["apply_neighborhood"]
    assert hood["size"][0] == {"dimension": "x", "value": 64, "unit": "px"}
    assert hood["overlap"][1] == {"dimension": "y", "value": 2, "unit": "px"}
    (udf,) = hood["process"]["process_graph"].values()
    assert udf["process_id"] == "run_udf" and udf["arguments"]["udf"] == UDF_FILE.read_text(encoding="utf-8")
    assert udf["arguments"]["context"]["model"] == "https://example.org/m.onnx"
    assert udf["arguments"]["context"]["encodings"] == {"S1": "linear power",
                                                        "S2": "reflectance x 10000 (L2A DN)"}
    assert by_process["rename_labels"][0]["target"] == ["prediction", "confidence"]
    assert by_process["save_result"][0]["format"] == "GTiff"


def test_graph_refuses_modalities_openeo_cannot_load(tmp_path):
    card = read_card(BUNDLED)
    weather = card.__class__(**{**card.__dict__, "inputs": (
        card.inputs[0].__class__(**{**card.inputs[0].__dict__, "modality": "weather"}),)})
    with pytest.raises(InputError, match="needs weather; the openEO graph can load S2, S1 only"):
        build_graph(weather, "m.onnx", (0, 0, 1, 1), "2021-01")
    with pytest.raises(InputError, match="YYYY-MM"):
        build_graph(spatial_card(), "m.onnx", (0, 0, 1, 1), "March")
    with pytest.raises(InputError, match="takes month and latlon inputs, which the openEO UDF does not "
                                         r"compute yet; run it with the local engine \(QGIS or the CLI\)"):
        build_graph(card, "m.onnx", (0, 0, 1, 1), "2020-11")


def test_udf_model_must_be_a_path_or_https(cube):
    with pytest.raises(InputError, match="must use https"):
        run_udf(cube, {"model": "http://example.org/m.onnx"})
    with pytest.raises(InputError, match="needs 'model'"):
        run_udf(cube, {})
