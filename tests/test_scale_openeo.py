"""openEO: the UDF run by the openeo package's local UDF execution on the real cube as a
DataArray (t, bands, y, x) with its dates and x/y pixel centres, the CRS in the UDF context, equal
to the local engine (bundled models with month and latitude/longitude inputs, and a spatial
model); and the process graph the CLI writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from eo_missing_qgis.core import cli, raster_io
from eo_missing_qgis.core.block import output_names
from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import CUBE_TRANSFORM, S1_VARS, S2_VARS, cube_path, read_variable
from tests.test_engine_spatial import spatial_card, spatial_onnx
from tests.tolerances import RUNTIME_RTOL, assert_same_classes

openeo = pytest.importorskip("openeo")
xr = pytest.importorskip("xarray")

from openeo.udf import execute_local_udf  # noqa: E402

from eo_missing_qgis.core.scale.openeo_graph import UDF_FILE, build_graph  # noqa: E402

BUNDLED = "eo_missing_qgis/models/crop_type_europe_s1_s2.onnx"
#: Bundled models taking each step's month and each pixel's latitude/longitude: crop type (a
#: calendar card, November first) and LFMC (3 months, relative: the months come from the dates).
EUROPE = "eo_missing_qgis/models/crop_type_europe_s2.onnx"
LFMC = "eo_missing_qgis/models/lfmc_s2.onnx"
#: The cube's CRS (UTM 31N), which an openEO UDF learns from its context only, and a bbox around
#: it in degrees (west, south, east, north), as the graph passes them.
CUBE_EPSG = 32631
CUBE_BBOX = [5.3, 50.6, 5.4, 50.7]
ENCODINGS = {"S1": "WorldCereal DN (20 log10 DN - 83, nodata 65535)", "S2": "reflectance x 10000 (L2A DN)"}


@pytest.fixture(scope="module")
def cube(data_dir) -> xr.DataArray:
    """The cube as an openEO backend hands it to a UDF: (t, bands, y, x), openEO band names."""
    names = {**S1_VARS, **S2_VARS}
    values = np.stack([read_variable(data_dir, v)[0] for v in names.values()], axis=1)
    return xr.DataArray(values, dims=("t", "bands", "y", "x"), coords={
        "t": np.array([f"{2020 + (m > 12)}-{(m - 1) % 12 + 1:02d}-01" for m in range(11, 23)],
                      dtype="datetime64[ns]"),  # the cube's months: 2020-11 .. 2021-10
        "bands": list(names),
        "y": CUBE_TRANSFORM.f + CUBE_TRANSFORM.e * (np.arange(100) + 0.5),
        "x": CUBE_TRANSFORM.c + CUBE_TRANSFORM.a * (np.arange(100) + 0.5)})


def run_udf(cube: xr.DataArray, context: dict) -> xr.DataArray:
    udf = openeo.UDF(UDF_FILE.read_text(encoding="utf-8"), runtime="Python", context=context)
    return execute_local_udf(udf, cube).get_datacube_list()[0].get_array()


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.mark.parametrize(("model", "steps"),
                         [(EUROPE, slice(None)), (LFMC, slice(9, 12)), ("spatial", slice(None))])
def test_udf_equals_the_engine(tmp_path, data_dir, cube, model, steps):
    """LFMC on the cube's latest 3 months: the engine takes those from the netCDF's 12."""
    model = spatial_onnx(tmp_path / "s.onnx", spatial_card()) if model == "spatial" else model
    card = read_card(model)
    local = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "local.tif",
                      options=RunOptions(write_probabilities=True))
    context = {"model": model, "encodings": ENCODINGS, "probabilities": True, "crs": CUBE_EPSG,
               "bbox": CUBE_BBOX}
    out = run_udf(cube.isel(t=steps), context)
    assert out.dims == ("t", "bands", "y", "x") and out.sizes["t"] == 1
    assert list(out["bands"].values) == output_names(card, probabilities=True)
    np.testing.assert_array_equal(out["x"], cube["x"])
    got = out.values[0]
    if card.task != "classification":
        np.testing.assert_allclose(got[0], read(local.outputs["prediction"])[0], rtol=RUNTIME_RTOL)
        assert int(np.isfinite(got[0]).sum()) == local.pixels_predicted > 0
        return
    expected = read(local.outputs["probabilities"])
    np.testing.assert_allclose(got[2:], expected, atol=2e-5)
    np.testing.assert_allclose(got[1], read(local.outputs["confidence"])[0], atol=2e-5)
    assert_same_classes(got[0].astype(np.uint8), read(local.outputs["prediction"])[0], expected)
    assert int((got[0] > 0).sum()) == local.pixels_predicted > 0
    if card.context:  # the context's CRS is used: the same x/y read in UTM 32N are 6 degrees east
        shifted = run_udf(cube.isel(t=steps), {**context, "crs": CUBE_EPSG + 1, "bbox": None}).values[0]
        assert np.nanmax(np.abs(shifted[2:] - got[2:])) > 1e-3


def test_udf_month_and_location_come_from_the_cube_and_its_context(cube):
    """A calendar card without dates starts at its first month; a relative one is refused, as is a
    card taking latitude/longitude without the cube's EPSG code or with an unknown one."""
    context = {"model": EUROPE, "encodings": ENCODINGS, "crs": CUBE_EPSG}
    undated = cube.drop_vars("t")
    np.testing.assert_array_equal(run_udf(undated, context).values, run_udf(cube, context).values)
    with pytest.raises(InputError, match="model lfmc_s2 takes the calendar month of each time step: give the "
                                         r"cube a time coordinate \('t'\) of dates"):
        run_udf(undated.isel(t=slice(9, 12)), {**context, "model": LFMC})
    gap = cube.isel(t=[8, 10, 11])
    with pytest.raises(InputError, match=r"the cube's dates \(2021-07, 2021-09, 2021-10\) are not 3 "):
        run_udf(gap, {**context, "model": LFMC})
    with pytest.raises(InputError, match="latitude/longitude: the UDF context needs 'crs', the cube's EPSG"):
        run_udf(cube, {"model": EUROPE, "encodings": ENCODINGS})
    with pytest.raises(InputError, match="crs 1 is not a known EPSG code"):
        run_udf(cube, {**context, "crs": 1})
    in_bbox = {**context, "bbox": CUBE_BBOX}
    with pytest.raises(InputError, match=r"centre is at latitude 50.\d+, longitude 11.\d+ when its x/y are "
                                         r"read in EPSG:32632, outside the job.s bbox \(5.3, 50.6, 5.4,"):
        run_udf(cube, {**in_bbox, "crs": 32632})
    indices = cube.assign_coords(x=np.arange(100), y=np.arange(100))  # no georeferenced x/y
    with pytest.raises(InputError, match="its x/y are not in that CRS, so latitude/longitude inputs would"):
        run_udf(indices, in_bbox)


def test_udf_latitude_longitude_on_gdal_osr(monkeypatch, cube):
    """A runtime with GDAL's ``osgeo`` and no rasterio: the same maps (osr's PROJ, same centres)."""
    context = {"model": EUROPE, "encodings": ENCODINGS, "probabilities": True, "crs": CUBE_EPSG}
    with_rasterio = run_udf(cube, context).values[0]
    monkeypatch.setattr(raster_io, "_rasterio", raster_io._gdal_backend())
    with_gdal = run_udf(cube, context).values[0]
    assert raster_io.rasterio_module().__name__.endswith("gdal_backend")
    np.testing.assert_allclose(with_gdal[1:], with_rasterio[1:], atol=2e-5)
    assert_same_classes(with_gdal[0], with_rasterio[0], with_rasterio[2:])


def test_udf_says_which_bands_are_missing(cube):
    with pytest.raises(InputError, match="lack bands model crop_type_europe_s1_s2 needs: S1 VH"):
        run_udf(cube.drop_sel(bands="VH"), {"model": BUNDLED, "encodings": ENCODINGS})


def test_udf_logs_a_wrong_encoding(cube, caplog):
    with caplog.at_level("WARNING"):
        run_udf(cube, {"model": EUROPE, "crs": CUBE_EPSG,
                       "encodings": {**ENCODINGS, "S2": "reflectance (0-1)"}})
    assert any("look like reflectance x 10000, not 0-1" in r.getMessage() for r in caplog.records)


def processes(graph) -> dict[str, list[dict]]:
    """The arguments of each node of a graph JSON file, by process id."""
    by_process: dict[str, list[dict]] = {}
    for node in json.loads(graph.read_text())["process_graph"].values():
        by_process.setdefault(node["process_id"], []).append(node["arguments"])
    return by_process


def test_graph_runs_the_udf_on_monthly_composites(tmp_path):
    model = spatial_onnx(tmp_path / "s.onnx", spatial_card())
    out = tmp_path / "graph.json"
    assert cli.main(["openeo-graph", "--model", model, "--model-url", "https://example.org/m.onnx",
                     "--bbox", "4.6", "50.6", "4.7", "50.7", "--start", "2021-03", "--out", str(out)]) == 0
    by_process = processes(out)
    loads = {a["id"]: a for a in by_process["load_collection"]}
    assert set(loads) == {"SENTINEL2_L2A", "SENTINEL1_GRD"}
    assert loads["SENTINEL2_L2A"]["temporal_extent"] == ["2021-03-01", "2022-03-01"]
    assert loads["SENTINEL1_GRD"]["bands"] == ["VV", "VH"]
    assert by_process["sar_backscatter"][0]["coefficient"] == "sigma0-ellipsoid"  # linear power
    assert all(a["period"] == "month" for a in by_process["aggregate_temporal_period"])
    # S2's monthly median is of clear observations: SCL cloud / shadow / saturated / no data and
    # values above reflectance 1 masked first; S1 is composited as it comes
    assert loads["SENTINEL2_L2A"]["bands"][-1] == "SCL"
    assert by_process["filter_bands"][0]["bands"] == loads["SENTINEL2_L2A"]["bands"][:-1]
    graph = json.loads(out.read_text())["process_graph"]
    composited = {graph[a["data"]["from_node"]]["process_id"]
                  for a in by_process["aggregate_temporal_period"]}
    assert composited == {"mask", "sar_backscatter"}
    scl = next(a for a in by_process["reduce_dimension"] if a["dimension"] == "bands")["reducer"]
    assert sorted(n["arguments"]["y"] for n in scl["process_graph"].values()
                  if n["process_id"] == "eq") == [0, 1, 3, 8, 9, 10]
    (above,) = [a for a in by_process["apply"] if "gt1" in a["process"]["process_graph"]]
    assert above["process"]["process_graph"]["gt1"]["arguments"]["y"] == 10000
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
    with pytest.raises(InputError, match="needs series starting in month 11, not 2021-01"):
        build_graph(card, "m.onnx", (0, 0, 1, 1), "2021-01")


def test_graph_for_a_bundled_model_tells_the_udf_the_cube_crs(tmp_path, capsys, cube):
    """The cube is pinned (resample_spatial) to the CRS the UDF context names: by default the UTM
    zone of the bbox centre (31N at the cube's place, 19S in Chile), else the one given; the UDF
    run with the graph's context over the cube gives the maps it gives with the cube's own."""
    out = tmp_path / "graph.json"
    args = ["openeo-graph", "--model", EUROPE, "--bbox", "4.6", "50.6", "4.7", "50.7", "--start", "2020-11",
            "--out", str(out)]
    for extra, epsg in [([], CUBE_EPSG), (["--cube-crs", "EPSG:3035"], 3035)]:
        assert cli.main([*args, *extra]) == 0
        by_process = processes(out)
        (resample,) = by_process["resample_spatial"]
        (udf,) = by_process["apply_neighborhood"][0]["process"]["process_graph"].values()
        assert resample["projection"] == udf["arguments"]["context"]["crs"] == epsg
        assert udf["arguments"]["context"]["bbox"] == pytest.approx([4.6, 50.6, 4.7, 50.7])
    assert by_process["rename_labels"][0]["target"] == output_names(read_card(EUROPE))
    utm = ["--bbox", "664000", "5611120", "665000", "5612120", "--crs", "EPSG:32631"]
    assert cli.main([*args, *utm]) == 0
    by_process = processes(out)
    assert by_process["resample_spatial"][0]["projection"] == CUBE_EPSG
    (udf,) = by_process["apply_neighborhood"][0]["process"]["process_graph"].values()
    west, south, east, north = udf["arguments"]["context"]["bbox"]  # the cube's place, in degrees
    assert 5.3 < west < east < 5.34 and 50.62 < south < north < 50.64
    graph_context = {**udf["arguments"]["context"], "model": EUROPE, "encodings": ENCODINGS}
    np.testing.assert_array_equal(run_udf(cube, graph_context).values, run_udf(cube, {
        "model": EUROPE, "encodings": ENCODINGS, "crs": CUBE_EPSG}).values)
    chile = build_graph(read_card(LFMC), "m.onnx", (-70.2, -30.1, -70.1, -30.0), "2021-08")
    assert [n["arguments"]["projection"] for n in chile["process_graph"].values()
            if n["process_id"] == "resample_spatial"] == [32719]
    assert cli.main([*args, "--cube-crs", "UTM31"]) == 2
    assert "the cube's CRS must be an EPSG code such as EPSG:32631, not 'UTM31'" in capsys.readouterr().err


def test_udf_model_must_be_a_path_or_https(cube):
    with pytest.raises(InputError, match="must use https"):
        run_udf(cube, {"model": "http://example.org/m.onnx"})
    with pytest.raises(InputError, match="needs 'model'"):
        run_udf(cube, {})
