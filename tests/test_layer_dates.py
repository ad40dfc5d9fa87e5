"""Dates recognised from what the layers carry (issue 10): one month of the real cube written as
Sentinel-style single-scene files is placed on the card's months without the user giving a date."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from eo_missing_qgis.core.card import card_from_dict, read_card
from eo_missing_qgis.core.dates import (
    description_dates,
    l1c_reason,
    name_date,
    netcdf_band_dates,
    netcdf_date,
    netcdf_time,
    recognised_dates,
)
from eo_missing_qgis.core.definitions import TimeLayout
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.prediction import LayerMapping, parse_mapping
from eo_missing_qgis.core.raster_inputs import match_inputs
from eo_missing_qgis.core.raster_io import read_header
from eo_missing_qgis.core.recognition import RasterInput, recognise
from tests.engine_data import CUBE_TRANSFORM, cube_path, read_variable, s2_stack, variable, write_tif
from tests.test_context_engine import available, one_month, predict, regression_card
from tests.tiny_models import S2_BANDS, card_dict, input_dict, probe_onnx, tiny_onnx
from tests.tolerances import FLOAT32_INPUT_RTOL

BUNDLED = Path(__file__).parents[1] / "eo_missing_qgis" / "models"
JUNE = 7  # the cube's step of 2021-06
TWENTY_M = ("B05", "B06", "B07", "B8A", "B11", "B12")


@pytest.mark.parametrize(("path", "metadata", "descriptions", "expected"), [
    ("a.tif", {"DATATAKE_1_DATATAKE_SENSING_START": "2021-06-12T10:40:21.024Z"}, (), ["2021-06-12"]),
    ("a.tif", {"TIFFTAG_DATETIME": "2021:06:12 10:40:21"}, (), ["2021-06-12"]),
    ("a.tif", {"ACQUISITION_DATE": "2021-06-12", "TIFFTAG_DATETIME": "2024:01:01 00:00:00"}, (),
     ["2021-06-12"]),
    ("a.nc", {"NETCDF_DIM_time": "18790", "time#units": "days since 1970-01-01"}, (), ["2021-06-12"]),
    ("a.nc", {"NETCDF_DIM_t": "11474", "t#units": "days since 1990-01-01", "NETCDF_DIM_x": "3"}, (),
     ["2021-06-01"]),
    ("/d/S2B_MSIL2A_20210612T104021_N0300_R008_T31UFS_20210612T134523.SAFE/x.jp2", {}, (), ["2021-06-12"]),
    ("/d/T31UFS_20210612T104021_B04_10m.jp2", {}, (), ["2021-06-12"]),
    ("/d/S1A_IW_GRDH_1SDV_20210612T054012_20210612T054037_038310_0485A4_VV.tif", {}, (), ["2021-06-12"]),
    ("a.tif", {}, ("B04 2021-06-12", "B08 2021-06-12"), ["2021-06-12"]),
    ("a.tif", {}, ("2021-05-02", "2021-06-12"), ["2021-05-02", "2021-06-12"]),
    ("s2_2021-06.tif", {}, ("B02", "B03"), None),
    ("a.tif", {}, ("B02 2021-05-02", "B03 2021-06-12"), None),  # mixed dates in a one-date layer
])
def test_dates_recognised_from_metadata_netcdf_names_and_descriptions(path, metadata, descriptions, expected):
    assert recognised_dates(path, metadata, descriptions) == expected


def test_netcdf_units_and_names_without_dates():
    assert netcdf_date("36", "hours since 2021-06-11") == "2021-06-12"
    assert netcdf_date("3", "months since 2021-01-01") is None  # not a fixed length: not guessed
    assert name_date("/d/B04_10m.jp2") is None
    assert description_dates(()) is None


def test_the_real_cube_carries_netcdf_time(data_dir):
    with rasterio.open(variable(data_dir, "S2-L2A-B04")) as ds:
        metadata = {**ds.tags(), **ds.tags(JUNE + 1)}
    assert netcdf_time(metadata).startswith("2021-06")


def test_a_multi_step_netcdf_variable_is_dated_band_by_band(data_dir):
    """The cube's variables hold one band per month: each band's date comes from the netCDF time
    coordinate, so the months are read from the data, not assumed from band order."""
    header = read_header(variable(data_dir, "S2-L2A-B04"))
    months = [d[:7] for d in recognised_dates(header.path, header.metadata, header.descriptions)]
    assert months == [f"2020-{m}" for m in ("11", "12")] + [f"2021-{m:02d}" for m in range(1, 11)]
    plan = match_inputs(read_card(BUNDLED / "crop_type_europe_s2.onnx"), [RasterInput(cube_path(data_dir))])
    assert plan.time.summary().startswith("12 of 12 months: 2020-11, 2020-12, 2021-01")
    assert netcdf_band_dates({**header.metadata, "NETCDF_DIM_EXTRA": "{t,z}"}) is None  # bands not per date
    assert netcdf_band_dates({**header.metadata, "t#units": "months since 1990-01-01"}) is None


def sentinel_band_files(tmp_path, data_dir, stamp: str = "20210612T104021",
                        prefix: str = "T31UFS_{stamp}_") -> list[RasterInput]:
    """June of the cube's S2 as one GeoTIFF per band named like a Sentinel-2 L2A tile: the 10 m
    bands at 10 m, the 20 m bands averaged to 20 m."""
    stack = s2_stack(data_dir)[JUNE]
    layers = []
    for k, band in enumerate(S2_BANDS):
        data = stack[k]
        transform, res = CUBE_TRANSFORM, 10
        if band in TWENTY_M:
            with rasterio.io.MemoryFile() as mem, mem.open(
                    driver="GTiff", width=100, height=100, count=1, dtype=data.dtype,
                    transform=CUBE_TRANSFORM, crs="EPSG:32631", nodata=65535) as ds:
                ds.write(data, 1)
                data = ds.read(1, out_shape=(50, 50), resampling=Resampling.average)
            transform, res = CUBE_TRANSFORM @ CUBE_TRANSFORM.scale(2), 20
        name = f"{prefix.format(stamp=stamp)}{band}_{res}m.tif"
        layers.append(RasterInput(write_tif(tmp_path / name, data, transform=transform, nodata=65535)))
    return layers


def test_sentinel_band_files_at_10_and_20_m_run_as_1_of_12_months(tmp_path, data_dir):
    messages: list[str] = []
    bits = [2.0 ** t for t in range(12)]
    out, tags = predict(tmp_path, regression_card(), "s2_mask", bits, sentinel_band_files(tmp_path, data_dir),
                        log=messages.append)
    valid = available(data_dir)[JUNE]
    assert np.isclose(out[valid], 2.0 ** JUNE).mean() > 0.95  # placed on June, the card's 8th step
    assert any(m.startswith("1 of 12 months: 2021-06; missing: 2020-11") for m in messages), messages
    assert tags["EO_MONTHS_USED"] == "2021-06"


def test_metadata_date_places_a_scene_and_a_given_date_wins(tmp_path, data_dir):
    path = write_tif(tmp_path / "scene.tif", s2_stack(data_dir)[JUNE], nodata=65535, descriptions=S2_BANDS)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2021-06-12T10:40:21Z")
    card = card_from_dict(regression_card())
    assert match_inputs(card, [RasterInput(path)]).time.used == ["2021-06"]
    assert match_inputs(card, [RasterInput(path, dates=["2021-05-30"])]).time.used == ["2021-05"]


def test_a_one_band_series_described_by_its_band_on_every_raster_band_takes_dates(tmp_path, data_dir):
    """An export of one band's time series (every raster band described "B04") is that band's
    layer, a date per raster band, not a stack of 6 steps of a "B04" band: dates place it."""
    june_july = s2_stack(data_dir)[[JUNE, JUNE + 1]]
    paths = [write_tif(tmp_path / f"series_{k}.tif", june_july[:, k], nodata=65535, descriptions=[b, b])
             for k, b in enumerate(S2_BANDS)]
    rec = recognise(RasterInput(paths[2]), read_header(paths[2]))
    assert (rec.modality, rec.band, rec.layout) == ("S2", "B04", TimeLayout.BAND_PER_LAYER)
    card = card_from_dict(regression_card())
    plan = match_inputs(card, [RasterInput(p, dates=["2021-06-12", "2021-07-02"]) for p in paths])
    assert plan.time.used == ["2021-06", "2021-07"]


def test_s1_pair_named_like_a_grd_product_is_dated(tmp_path, data_dir):
    card = regression_card()
    card["inputs"] = [input_dict("S1")]
    card["context"][0].update(modality="S1", tensor="s1_mask")
    layers = []
    for band in ("VV", "VH"):
        values, grid = read_variable(data_dir, f"S1-SIGMA0-{band}")
        name = f"S1A_IW_GRDH_1SDV_20210612T054012_20210612T054037_038310_0485A4_{band}.tif"
        layers.append(RasterInput(write_tif(tmp_path / name, values[JUNE], nodata=grid["nodata"])))
    plan = match_inputs(card_from_dict(card), layers)
    assert plan.time.summary().startswith("1 of 12 months: 2021-06; missing: 2020-11")


def test_a_wrong_date_is_named(tmp_path, data_dir):
    layers = sentinel_band_files(tmp_path, data_dir)
    layers[0] = RasterInput(layers[0].path, dates=["2023-06-12"])  # B02 said to be two years later
    with pytest.raises(InputError, match=r"T31UFS_20210612T104021_B02_10m.tif: its date\(s\) fall outside"):
        match_inputs(card_from_dict(regression_card()), layers)


def test_l1c_is_named():
    assert "MSIL1C" in l1c_reason("/d/S2A_MSIL1C_20210612T104021_N0300.tif", {})
    assert "PROCESSING_LEVEL=Level-1C" in l1c_reason("a.tif", {"PROCESSING_LEVEL": "Level-1C"})
    assert l1c_reason("/d/S2A_MSIL2A_20210612T104021.tif", {"PROCESSING_LEVEL": "Level-2A"}) is None


@pytest.mark.parametrize("how", ["name", "metadata"])
def test_an_l1c_scene_is_refused_with_the_reason_unless_the_model_was_trained_on_l1c(tmp_path, data_dir, how):
    name = "S2B_MSIL1C_20210612T104021.tif" if how == "name" else "scene.tif"
    path = write_tif(tmp_path / name, s2_stack(data_dir)[JUNE], nodata=65535, descriptions=S2_BANDS)
    if how == "metadata":
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(PROCESSING_LEVEL="Level-1C", SENSING_TIME="2021-06-12T10:40:21Z")
    card = regression_card()
    words = "MSIL1C" if how == "name" else "PROCESSING_LEVEL=Level-1C"
    refusal = rf"is Sentinel-2 Level-1C \(top-of-atmosphere reflectance\): .*{words}.*use the Level-2A"
    with pytest.raises(InputError, match=refusal):
        match_inputs(card_from_dict(card), [RasterInput(path)])
    card["inputs"][0]["sensor"] = "Sentinel-2 L1C"
    assert match_inputs(card_from_dict(card), [RasterInput(path)]).time.used == ["2021-06"]


def needs_every_month(path: Path) -> Path:
    """A calendar S2 model from November needing all its 12 steps (no ``time.min_steps``), as the
    bundled crop-type models were before they took availability masks."""
    card = card_dict("classification", ("S2",), 12)
    card["time"].update(alignment="calendar", first_month=11)
    return tiny_onnx(path, card)


def test_cli_runs_sentinel_band_files_without_dates(tmp_path, data_dir, capsys):
    from eo_missing_qgis.core.cli import main

    model = probe_onnx(tmp_path / "probe.onnx", regression_card(), "s2_mask", [2.0 ** t for t in range(12)])
    inputs = [a for layer in sentinel_band_files(tmp_path, data_dir) for a in ("--input", layer.path)]
    assert main(["predict", "--model", str(model), *inputs, "--out", str(tmp_path / "cli.tif")]) == 0
    assert "1 of 12 months: 2021-06; missing: 2020-11" in capsys.readouterr().err
    with rasterio.open(tmp_path / "cli.tif") as ds:
        assert ds.tags()["EO_MONTHS_USED"] == "2021-06"
    bundled = str(BUNDLED / "crop_type_europe_s2.onnx")  # runs from one month (time.min_steps 1)
    assert main(["predict", "--model", bundled, *inputs, "--out", str(tmp_path / "b.tif")]) == 0
    assert "1 of 12 months: 2021-06; missing: 2020-11" in capsys.readouterr().err
    every_month = str(needs_every_month(tmp_path / "twelve.onnx"))
    assert main(["predict", "--model", every_month, *inputs, "--out", str(tmp_path / "t.tif")]) == 2
    err = capsys.readouterr().err
    assert "needs at least 12 of its 12 monthly steps, the layers give 1 of 12 months: 2021-06" in err
    assert "add layers for 11 more of the missing months" in err


def test_qgis_process_runs_sentinel_band_files_without_dates(qgis_process, tmp_path, data_dir):
    model = probe_onnx(tmp_path / "probe.onnx", regression_card(), "s2_mask", [2.0 ** t for t in range(12)])
    layers = [f"S2={layer.path}" for layer in sentinel_band_files(tmp_path, data_dir)]
    qgis_process("run", "eomissing:predict", "--", f"MODEL={model}", f"OUTPUT={tmp_path / 'out.tif'}",
                 *layers)
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.tags()["EO_MONTHS_USED"] == "2021-06"
    qgis_process("run", "eomissing:predict", "--", f"MODEL={BUNDLED / 'crop_type_europe_s2.onnx'}",
                 f"OUTPUT={tmp_path / 'b.tif'}", *layers)  # runs from one month (time.min_steps 1)
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.tags()["EO_MONTHS_USED"] == "2021-06"
    every_month = needs_every_month(tmp_path / "twelve.onnx")
    refused = qgis_process("run", "eomissing:predict", "--", f"MODEL={every_month}",
                           f"OUTPUT={tmp_path / 't.tif'}", *layers, check=False)
    assert refused.returncode != 0
    assert "the layers give 1 of 12 months: 2021-06" in refused.stdout + refused.stderr


def test_two_dates_in_one_month_are_composited_per_pixel(tmp_path, data_dir):
    card = regression_card()
    weights = [0.0] * (12 * len(S2_BANDS))
    weights[JUNE * len(S2_BANDS) + S2_BANDS.index("B04")] = 1.0  # June's B04, as fed to the model

    def run(name: str, scenes: list[tuple[int, str]], log=None) -> np.ndarray:
        (tmp_path / name).mkdir()
        inputs = [one_month(tmp_path / name, data_dir, t, date) for t, date in scenes]
        return predict(tmp_path / name, card, "s2", weights, inputs, log=log)[0]

    messages: list[str] = []
    early, late = run("early", [(JUNE, "2021-06-05")]), run("late", [(JUNE - 1, "2021-06-25")])
    both = run("both", [(JUNE, "2021-06-05"), (JUNE - 1, "2021-06-25")], log=messages.append)
    # pixels where a band of either scene is impossible (reflectance > 1) are gaps at that step: left out
    scenes = s2_stack(data_dir)[[JUNE, JUNE - 1]]
    possible = ((scenes <= 10000) | (scenes == 65535)).all(axis=(0, 1)).reshape(early.shape)
    two, one = np.isfinite(early) & np.isfinite(late), np.isfinite(early) ^ np.isfinite(late)
    two, one = two & possible, one & possible
    assert two.sum() > 5000 and not np.allclose(early[two], late[two])
    np.testing.assert_allclose(both[two], (early[two] + late[two]) / 2, rtol=FLOAT32_INPUT_RTOL, atol=1e-4)
    np.testing.assert_allclose(both[one], np.where(np.isfinite(early), early, late)[one],
                               rtol=FLOAT32_INPUT_RTOL, atol=1e-4)
    assert any("2 dates of one month composited (per-pixel median" in m for m in messages), messages
    assert any(m.startswith("1 of 12 months: 2021-06") for m in messages), messages
    # a date whose B04 is impossible (reflectance > 1, not the fill value) is left out of the median
    b04 = scenes[:, S2_BANDS.index("B04")].reshape(2, *early.shape)
    impossible_late = (b04[1] > 10000) & (b04[1] != 65535) & (b04[0] <= 10000) & np.isfinite(early)
    assert impossible_late.sum() >= 2
    np.testing.assert_allclose(both[impossible_late], early[impossible_late],
                               rtol=FLOAT32_INPUT_RTOL, atol=1e-4)


def test_mapping_text_takes_dates():
    assert parse_mapping("vv.tif: @ 2021-06-12; s: B04 @ 2021-05-01, 2021-06-01") == {
        "vv.tif": LayerMapping((), 0, ("2021-06-12",)),
        "s": LayerMapping(("B04",), 0, ("2021-05-01", "2021-06-01"))}
    with pytest.raises(InputError, match=r"'vv\.tif': date '2021-13-01' is not a date; write it as YYYY-MM"):
        parse_mapping("vv.tif: @ 2021-13-01")


def test_qgis_process_takes_dates_per_layer(qgis_process, tmp_path, data_dir):
    model = probe_onnx(tmp_path / "probe.onnx", regression_card(), "s2_mask", [2.0 ** t for t in range(12)])
    layers = sentinel_band_files(tmp_path, data_dir, prefix="scene_")  # names without a date
    dates = "; ".join(f"{Path(layer.path).name}: @ 2021-07-02" for layer in layers)
    args = ["run", "eomissing:predict", "--", f"MODEL={model}", *[f"S2={layer.path}" for layer in layers]]
    qgis_process(*args, f"OUTPUT={tmp_path / 'out.tif'}", f"LAYER_BANDS={dates}")
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.tags()["EO_MONTHS_USED"] == "2021-07"
    undated = qgis_process(*args, f"OUTPUT={tmp_path / 'b.tif'}", check=False)
    assert undated.returncode != 0
    assert "has 1 time steps but the model needs 12" in undated.stdout + undated.stderr

