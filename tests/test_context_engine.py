"""Context inputs on the real cube: the engine feeds the mask, month and lat/lon a card asks for,
places dated layers on the card's months, refuses too few months, and says which it used."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from osgeo import osr

from eo_missing_qgis.core import gdal_backend
from eo_missing_qgis.core.block import BlockContext, predict_block, prepare_block
from eo_missing_qgis.core.card import card_from_dict
from eo_missing_qgis.core.engine import run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import match_inputs
from eo_missing_qgis.core.raster_io import pixel_latlon, read_header
from eo_missing_qgis.core.recognition import RasterInput
from eo_missing_qgis.core.session import open_session
from eo_missing_qgis.core.tiling import Window
from tests.engine_data import CUBE_TRANSFORM, S2_VARS, cube_path, s2_stack, variable, write_tif
from tests.tiny_models import S2_BANDS, card_dict, context_card_dict, probe_onnx
from tests.tolerances import FLOAT32_INPUT_RTOL, LATLON_ATOL_DEG

#: The cube's months, step 0 first.
CUBE_MONTHS = [f"2020-{m:02d}" for m in (11, 12)] + [f"2021-{m:02d}" for m in range(1, 11)]


def regression_card(steps: int = 12, **kw) -> dict:
    data = context_card_dict("regression", steps, **kw)
    data["output"].update(range=[-1e4, 1e4])
    return data


def osr_latlon(epsg: int = 32631, left: float = CUBE_TRANSFORM.c, top: float = CUBE_TRANSFORM.f,
               shape: tuple[int, int] = (100, 100)) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of the centres of a 10 m grid (default: the cube's), computed here
    with osr, point by point."""
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(epsg)
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    xs, ys = left + 10 * cols, top - 10 * rows
    points = osr.CoordinateTransformation(src, dst).TransformPoints(
        list(zip(xs.ravel(), ys.ravel(), strict=True)))
    lonlat = np.asarray(points)[:, :2].reshape(*shape, 2)
    return lonlat[..., 1], lonlat[..., 0]


def predict(tmp_path, card: dict, tensor: str, weights, inputs, log=None) -> tuple[np.ndarray, dict]:
    model = probe_onnx(tmp_path / "probe.onnx", card, tensor, weights)
    result = run_model(model, inputs, tmp_path / "out.tif", log=log)
    with rasterio.open(result.outputs["prediction"]) as ds:
        return ds.read(1), ds.tags()


def available(data_dir) -> np.ndarray:
    """(time, rows, cols): every S2 band of the cube has a value, and a possible one (15 stored
    values of the cube decode to reflectance 1.0-1.6: missing, as in training)."""
    from eo_missing_qgis.core.units import PHYSICAL_LIMITS

    stored = s2_stack(data_dir)
    low, high = PHYSICAL_LIMITS["reflectance"]
    return ((stored != 65535) & (stored / 10000 >= low) & (stored / 10000 <= high)).all(axis=1)


def test_pixel_latlon_matches_osr_on_both_backends(data_dir):
    grid = read_header(variable(data_dir, S2_VARS["B04"])).grid
    lat, lon = osr_latlon()
    got_lat, got_lon = pixel_latlon(grid, Window(0, 0, 100, 100))
    np.testing.assert_allclose(got_lat, lat, rtol=0, atol=LATLON_ATOL_DEG)
    np.testing.assert_allclose(got_lon, lon, rtol=0, atol=LATLON_ATOL_DEG)
    assert 50.5 < lat.min() < lat.max() < 50.7 and 5.2 < lon.min() < lon.max() < 5.4  # Belgium
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32631)
    gdal_lon, gdal_lat = gdal_backend.warp.transform(
        gdal_backend.CRS(utm.ExportToWkt()), "EPSG:4326", [664005.0], [5612115.0])
    np.testing.assert_allclose([gdal_lat[0], gdal_lon[0]], [lat[0, 0], lon[0, 0]], rtol=0,
                               atol=LATLON_ATOL_DEG)


@pytest.mark.parametrize("column", [0, 1])
def test_engine_feeds_each_pixels_latitude_and_longitude(tmp_path, data_dir, column):
    card = regression_card(latlon="degrees")
    out, _ = predict(tmp_path, card, "latlon", [1.0 - column, float(column)],
                     [RasterInput(variable(data_dir, v)) for v in S2_VARS.values()])
    valid = available(data_dir).any(axis=0)
    expected = osr_latlon()[column]
    assert valid.sum() > 9000 and np.isnan(out[~valid]).all()
    np.testing.assert_allclose(out[valid], expected[valid], rtol=FLOAT32_INPUT_RTOL, atol=0)


def test_engine_feeds_the_availability_of_each_step(tmp_path, data_dir):
    bits = [2.0 ** t for t in range(12)]
    out, tags = predict(tmp_path, regression_card(), "s2_mask", bits, [RasterInput(cube_path(data_dir))])
    avail = available(data_dir)
    expected = np.tensordot(bits, avail, axes=1)
    valid = avail.any(axis=0)
    assert (avail.sum(axis=(1, 2)) == 0).sum() >= 2  # the cube lacks S2 in some whole months
    np.testing.assert_allclose(out[valid], expected[valid], rtol=FLOAT32_INPUT_RTOL)
    # the cube's netCDF time coordinate names the steps (2020-11 .. 2021-10)
    labels = ["2020-11", "2020-12"] + [f"2021-{m:02d}" for m in range(1, 11)]
    empty = [label for label, a in zip(labels, avail.any(axis=(1, 2)), strict=True) if not a]
    assert tags["EO_MONTHS_USED"].split(",")[0] == "2020-11" and tags["EO_MONTHS_MISSING"] == ",".join(empty)


@pytest.mark.parametrize("encoding", ["sin_cos", "index"])
def test_engine_feeds_the_month_of_each_step_from_the_dates(tmp_path, data_dir, encoding):
    card = regression_card(first_month=None, month=encoding)  # calendar months from the dates
    width = 2 if encoding == "sin_cos" else 1
    weights = list(np.arange(1, 12 * width + 1, dtype=float))
    out, tags = predict(tmp_path, card, "month", weights,
                        [RasterInput(variable(data_dir, v), dates=CUBE_MONTHS) for v in S2_VARS.values()])
    m = np.array([11, 12, *range(1, 11)], dtype=float) - 1
    values = np.stack([np.sin(2 * np.pi * m / 12), np.cos(2 * np.pi * m / 12)], 1) if width == 2 else m
    expected = float(np.dot(values.ravel(), weights))
    valid = available(data_dir).any(axis=0)
    np.testing.assert_allclose(out[valid], expected, rtol=FLOAT32_INPUT_RTOL, atol=1e-5)
    has_values = available(data_dir).any(axis=(1, 2))  # the cube has no S2 in 2020-12 and 2021-01
    assert tags["EO_MONTHS_USED"] == ",".join(m for m, a in zip(CUBE_MONTHS, has_values, strict=True) if a)
    assert tags["EO_MONTHS_MISSING"] == ",".join(m for m, a in zip(CUBE_MONTHS, has_values, strict=True)
                                                 if not a)


def one_month(tmp_path, data_dir, t: int, date: str) -> RasterInput:
    """Month ``t`` of the cube's S2 as one 9-band GeoTIFF, dated ``date``."""
    path = write_tif(tmp_path / f"s2_{date}.tif", s2_stack(data_dir)[t], nodata=65535, descriptions=S2_BANDS)
    return RasterInput(path, modality="S2", dates=[date])


def test_one_dated_scene_runs_as_1_of_12_months(tmp_path, data_dir):
    messages: list[str] = []
    inputs = [one_month(tmp_path, data_dir, 7, "2021-06-12")]
    bits = [2.0 ** t for t in range(12)]
    out, tags = predict(tmp_path, regression_card(), "s2_mask", bits, inputs, log=messages.append)
    valid = available(data_dir)[7]
    assert valid.sum() > 9000
    np.testing.assert_allclose(out[valid], 2.0 ** 7)  # placed on June, the calendar card's 8th step
    assert np.isnan(out[~valid]).all()
    line = "1 of 12 months: 2021-06; missing: 2020-11, 2020-12, 2021-01"
    assert any(m.startswith(line) for m in messages), messages
    assert tags["EO_MONTHS_USED"] == "2021-06" and tags["EO_MONTHS_MISSING"].startswith("2020-11,2020-12")


def test_too_few_months_are_refused_with_what_to_add(tmp_path, data_dir):
    card = regression_card()
    card["time"]["min_steps"] = 3
    with pytest.raises(InputError, match=r"needs at least 3 of its 12 monthly steps, the layers give "
                                         r"1 of 12 months: 2021-06; missing: 2020-11.*add layers for 2 more"):
        match_inputs(card_from_dict(card), [one_month(tmp_path, data_dir, 7, "2021-06")])


def test_relative_card_anchors_on_the_newest_date(tmp_path, data_dir):
    card = regression_card(steps=3)
    card["time"].update(alignment="relative", first_month=None)
    inputs = [one_month(tmp_path, data_dir, t, CUBE_MONTHS[t]) for t in (5, 7)]
    plan = match_inputs(card_from_dict(card), inputs)
    assert plan.time.summary() == "2 of 3 months: 2021-04, 2021-06; missing: 2021-05"
    assert plan.time.months == (4, 5, 6)
    without_dates = [RasterInput(i.path, modality="S2", time_index=n) for n, i in enumerate(inputs)]
    plan = match_inputs(card_from_dict(card), without_dates)
    with pytest.raises(InputError, match="carry no dates: give each layer's date"):
        plan.time.known_months("probe")


@pytest.mark.parametrize(("dates", "words"), [
    (["2021-13"], "date '2021-13' is not a date; write it as YYYY-MM"),
    (["2021-06", "2021-07"], "has 1 date(s) but 2 were given"),
])
def test_bad_dates_are_named(tmp_path, data_dir, dates, words):
    layer = one_month(tmp_path, data_dir, 7, "2021-06")
    layer.dates = dates
    with pytest.raises(InputError) as err:
        match_inputs(card_from_dict(regression_card()), [layer])
    assert words in str(err.value)


def test_dates_outside_are_refused(tmp_path, data_dir):  # two in one month: tests/test_layer_dates.py
    short = card_from_dict(dict(regression_card(steps=3), time={
        "steps": 3, "alignment": "calendar", "first_month": 1, "min_steps": 1}))
    late = [one_month(tmp_path, data_dir, 7, "2021-06"), one_month(tmp_path, data_dir, 0, "2020-11")]
    with pytest.raises(InputError, match=r"s2_2021-06.tif: its date\(s\) fall outside the model's 3 months"):
        match_inputs(short, late)


def test_a_1_1_card_runs_unchanged_and_lists_its_months(tmp_path, data_dir):
    data = card_dict("regression", ("S2",), steps=12)
    data["schema_version"] = "1.1"
    data["output"].update(range=[-1e4, 1e4])
    messages: list[str] = []
    out, tags = predict(tmp_path, data, "s2", [1.0] + [0.0] * (12 * 9 - 1),
                        [RasterInput(cube_path(data_dir))], log=messages.append)
    log = "\n".join(messages)
    assert "12 of 12 months: 2020-11, 2020-12, 2021-01" in log  # what the layers hold, dated by the cube
    empty = [m for m, a in zip(("2020-11", "2020-12", "2021-01"), available(data_dir).any(axis=(1, 2)),
                               strict=False) if not a]
    assert empty == ["2020-12", "2021-01"]  # and what they had values for
    assert "no valid values in 2020-12, 2021-01 (nodata or clouds): 10 of 12 months" in log
    assert np.isfinite(out).sum() > 9000 and tags["EO_MONTHS_MISSING"] == ",".join(empty)
    one = one_month(tmp_path, data_dir, 0, "2020-11")
    one.dates, one.time_index = None, 0
    with pytest.raises(InputError, match=r"missing: S2 B02 \(time step\(s\) 2, 3"):  # no min_steps: all
        match_inputs(card_from_dict(data), [one])


def test_prepare_block_encodes_latlon_and_refuses_missing_context(data_dir):
    card = card_from_dict(regression_card())
    x = np.full((12, 9, 1, 2), 0.1, dtype=np.float32)
    x[3, 4, 0, 1] = np.nan  # one band missing at step 4 for pixel 1: not available there
    ctx = BlockContext(months=[11, 12, *range(1, 11)], lat=np.array([[45.0, -30.0]]),
                       lon=np.array([[90.0, 180.0]]))
    tensors = prepare_block({"S2": x}, card, context=ctx).tensors
    np.testing.assert_allclose(tensors["latlon"], [[0.5, 1.0, 0.0], [-1 / 3, 0.0, -1.0]], atol=1e-7)
    assert tensors["s2_mask"][:, 3].tolist() == [1.0, 0.0] and tensors["s2_mask"].sum() == 23
    assert tensors["month"].shape == (2, 12, 2)
    with pytest.raises(InputError, match="takes each pixel's latitude/longitude"):
        prepare_block({"S2": x}, card, context=BlockContext(months=ctx.months))
    with pytest.raises(InputError, match="takes the month of each time step"):
        prepare_block({"S2": x}, card)
    strict = card_from_dict(dict(regression_card(), time={"steps": 12, "alignment": "calendar",
                                                          "first_month": 11, "min_steps": 12}))
    prepared = prepare_block({"S2": x}, strict, context=ctx)
    assert prepared.valid.tolist() == [[True, False]]  # pixel 1 has 11 of the 12 steps it needs
    assert prepared.tensors["s2_mask"].shape == (1, 12) and prepared.steps_seen.all()


def test_cli_takes_a_layers_date(tmp_path, data_dir, capsys):
    from eo_missing_qgis.core.cli import main

    model = probe_onnx(tmp_path / "probe.onnx", regression_card(), "s2_mask", [2.0 ** t for t in range(12)])
    scene = one_month(tmp_path, data_dir, 7, "2021-06")
    argv = ["predict", "--model", str(model), "--input", scene.path, "--modality", "S2",
            "--dates", "2021-06-12", "--out", str(tmp_path / "cli.tif"), "--quiet"]
    assert main(argv) == 0
    with rasterio.open(tmp_path / "cli.tif") as ds:
        assert ds.tags()["EO_MONTHS_USED"] == "2021-06"
    assert main([*argv[:-1], "--dates", "June"]) == 2
    assert "date 'June' is not a date; write it as YYYY-MM" in capsys.readouterr().err


def test_routes_without_dates_or_grid_refuse_computed_context(tmp_path, data_dir):
    card = card_from_dict(regression_card())
    physical = np.where(s2_stack(data_dir) == 65535, np.nan, s2_stack(data_dir) * np.float32(1e-4))
    with pytest.raises(InputError, match="takes the month of each time step; this route was not given"):
        prepare_block({"S2": physical}, card)
    with pytest.raises(InputError, match="takes each pixel's latitude/longitude; this route was not given"):
        prepare_block({"S2": physical}, card, context=BlockContext(months=list(range(1, 13))))
    only_mask = dict(regression_card(), context=regression_card()["context"][:1])
    bits = [2.0 ** t for t in range(12)]
    session = open_session(probe_onnx(tmp_path / "m.onnx", only_mask, "s2_mask", bits))
    out = predict_block({"S2": physical}, session.card, session)  # a mask needs neither: Dask/openEO run it
    expected = np.tensordot(bits, available(data_dir), axes=1)
    np.testing.assert_allclose(out.prediction[out.valid], expected[out.valid], rtol=FLOAT32_INPUT_RTOL)


def test_a_graph_whose_context_shape_differs_from_its_card_is_refused(tmp_path):
    import onnx

    from eo_missing_qgis.core.card import embed_card
    from eo_missing_qgis.core.errors import ModelError

    path = probe_onnx(tmp_path / "m.onnx", regression_card(month="index"), "month", [1.0] * 12)
    model = onnx.load(str(path))
    embed_card(model, card_from_dict(regression_card(month="sin_cos")))
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"context input 'month' is \['batch', 12\] in the graph, the card "
                                         r"says \['batch', 12, 2\]"):
        open_session(path)


def test_latlon_is_transformed_per_pixel_where_interpolation_would_be_wrong(tmp_path):
    """Across the antimeridian (UTM 60N near 180 degrees) longitudes jump from 180 to -180: the
    interpolated nodes fail their check and every pixel is transformed."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    path = write_tif(tmp_path / "fiji.tif", np.zeros((1, 50, 200), np.float32), crs=CRS.from_epsg(32660),
                     transform=Affine(10, 0, 832000, 0, -10, 1000))
    grid = read_header(path).grid  # on whichever raster backend runs
    lat, lon = pixel_latlon(grid, Window(0, 0, 50, 200))
    assert lon.max() > 179.99 and lon.min() < -179.99  # both sides of the antimeridian
    exact_lat, exact_lon = osr_latlon(32660, 832000, 1000, (50, 200))
    np.testing.assert_allclose(lon, exact_lon, rtol=0, atol=LATLON_ATOL_DEG)
    np.testing.assert_allclose(lat, exact_lat, rtol=0, atol=LATLON_ATOL_DEG)
