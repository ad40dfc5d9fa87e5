"""Multi-sensor stacks (Earth Engine / CropHarvest exports): every raster band is recognised from
its own description, each modality's bands are taken from the one file, static bands serve every
time step or are skipped, and every message names the file."""

from __future__ import annotations

import pytest
import rasterio

from eo_missing_qgis.core.card import card_from_dict, read_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import match_inputs
from eo_missing_qgis.core.raster_io import read_header
from eo_missing_qgis.core.recognition import RasterInput, recognise
from tests.engine_data import cube_path, write_tif
from tests.stack_data import MONTHLY, ee_stack
from tests.tiny_models import card_dict
from tests.tolerances import assert_same_classes

MODELS = __import__("pathlib").Path(__file__).resolve().parent.parent / "eo_missing_qgis" / "models"
S2_X10000 = "reflectance x 10000 (L2A DN)"
N = len(MONTHLY)  # raster bands per month


@pytest.fixture(scope="module")
def stack(data_dir, tmp_path_factory) -> str:
    return ee_stack(data_dir, tmp_path_factory.mktemp("ee") / "cropharvest_export.tif")


def test_every_band_is_recognised_from_its_own_description(stack):
    rec = recognise(RasterInput(stack), read_header(stack))
    assert rec.count == 12 * N + 2 == 206
    assert rec.modalities == ("S1", "S2", "weather", "DEM")
    assert rec.sensors[:3] == ("S1", "S1", "S2") and rec.bands[-2:] == ("elevation", "slope")
    assert "multi-sensor stack" in rec.reason and "identifies" not in rec.reason
    as_s1 = recognise(RasterInput(stack, modality="S1"), read_header(stack))
    assert as_s1.modalities == ("S1",) and "only its S1 bands are used" in as_s1.reason


def test_given_as_s1_only_its_vv_and_vh_bands_are_read(stack):
    """It used to be read as 206 months of VV (the first description), the latest 12 used."""
    plan = match_inputs(read_card(MODELS / "crop_type_europe_s1.onnx"), [RasterInput(stack, modality="S1")])
    for t in range(12):
        assert [s.band_index for s in plan.slots["S1"][t]] == [t * N + 1, t * N + 2]


def test_stack_predicts_the_map_of_the_cube(stack, data_dir, tmp_path):
    model = str(MODELS / "crop_type_europe_s1_s2.onnx")
    ref = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "cube.tif",
                    options=RunOptions(write_probabilities=True))
    log: list[str] = []
    got = run_model(model, [RasterInput(stack, modality="S1"),
                            RasterInput(stack, modality="S2", encoding=S2_X10000)], tmp_path / "stack.tif",
                    log=log.append)
    assert not any("not used" in line for line in log)  # each copy was restricted to one modality
    with rasterio.open(ref.outputs["prediction"]) as a, rasterio.open(ref.outputs["probabilities"]) as p, \
            rasterio.open(got.outputs["prediction"]) as b:
        assert b.crs.to_epsg() == 4326
        assert_same_classes(b.read(1), a.read(1), p.read())


def test_static_bands_serve_every_time_step_or_are_skipped(stack):
    dem = {"tensor": "dem", "modality": "DEM", "sensor": "SRTM", "layout": "NTC",
           "bands": [{"name": "elevation", "unit": "m"}, {"name": "slope", "unit": "degree"}],
           "scaling": {"method": "standardize", "mean": [0.0, 0.0], "std": [1.0, 1.0]}}
    card = card_dict(modalities=("S1",))
    card["inputs"].append(dem)
    plan = match_inputs(card_from_dict(card), [RasterInput(stack)])
    assert all([s.band_index for s in row] == [205, 206] for row in plan.slots["DEM"])
    s1_only = match_inputs(read_card(MODELS / "crop_type_europe_s1.onnx"), [RasterInput(stack)])
    assert any(w.startswith(stack) and "S2, weather, DEM bands are not used" in w for w in s1_only.warnings)


def test_first_step_and_latest_steps_in_a_stack(stack):
    card = read_card(MODELS / "lfmc_s1.onnx")  # 3 months
    latest = match_inputs(card, [RasterInput(stack, modality="S1")])
    assert latest.slots["S1"][0][0].band_index == 9 * N + 1
    assert any(stack in w and "latest 3 of 12 time steps (10-12)" in w for w in latest.warnings)
    first = match_inputs(card, [RasterInput(stack, modality="S1", time_index=0)])
    assert [row[0].band_index for row in first.slots["S1"]] == [1, N + 1, 2 * N + 1]
    with pytest.raises(InputError, match=r"cropharvest_export\.tif has 12 time steps but the model needs 3"):
        match_inputs(card, [RasterInput(stack, modality="S1", time_index=10)])


def test_wrong_band_counts_are_said_in_whole_numbers_naming_the_file(stack, tmp_path):
    with pytest.raises(InputError) as err:
        match_inputs(read_card(MODELS / "crop_type_europe_s1.onnx"),
                     [RasterInput(stack, modality="S1", layout="stacked", bands=list(MONTHLY))])
    assert "cropharvest_export.tif has 206 raster bands, which is not a whole number of time steps of 17" \
        in str(err.value) and "12.1" not in str(err.value)
    with rasterio.open(stack) as ds:  # one month lost its precipitation band
        keep = [k + 1 for k in range(ds.count) if k != 11 * N + N - 1]
        values, names = ds.read(keep), [ds.descriptions[k - 1] for k in keep]
    short = write_tif(tmp_path / "short.tif", values, descriptions=names)
    with pytest.raises(InputError, match=r"short.tif holds 12 time steps of most bands but not of "
                                         r"weather precipitation \(11\)"):
        match_inputs(card_from_dict(card_dict(modalities=("S1",))), [RasterInput(short)])


def test_one_band_per_layer_is_refused_when_descriptions_name_several_bands(stack):
    """Declared as one band per layer, it used to be read as 206 months of VV (the latest 12 used)."""
    with pytest.raises(InputError, match=r"cropharvest_export\.tif: its band descriptions name several bands "
                                         r"\(S1 VV, S1 VH, S2 B01"):
        match_inputs(read_card(MODELS / "crop_type_europe_s1.onnx"),
                     [RasterInput(stack, modality="S1", layout="band_per_layer")])


def test_one_encoding_for_a_whole_stack_is_refused(stack, tmp_path):
    """An S2 encoding given for the whole stack used to decode its S1 dB bands too (/ 10000)."""
    said = r"encoding 'reflectance x 10000 \(L2A DN\)' of .*cropharvest_export\.tif is for values in " \
        r"reflectance, but the model reads values in dB"
    with pytest.raises(InputError, match=said):
        run_model(str(MODELS / "crop_type_europe_s1_s2.onnx"), [RasterInput(stack, encoding=S2_X10000)],
                  tmp_path / "out.tif")
    assert list(tmp_path.iterdir()) == []


def test_one_date_exports_take_the_time_step_they_are_given(stack, tmp_path):
    """One export per month (19 bands each): each must say which step it is, then maps like the stack."""
    with rasterio.open(stack) as ds:
        names = list(ds.descriptions)
        dates = [write_tif(tmp_path / f"month{t}.tif", ds.read([*range(t * N + 1, t * N + N + 1), 205, 206]),
                           descriptions=names[:N] + names[-2:]) for t in range(12)]
    card = read_card(MODELS / "crop_type_europe_s1.onnx")
    with pytest.raises(InputError, match=r"month0\.tif holds one date: say which time step it is"):
        match_inputs(card, [RasterInput(d) for d in dates])
    plan = match_inputs(card, [RasterInput(d, layout="date_per_layer", time_index=t)
                               for t, d in enumerate(dates)])
    assert all([(s.input, s.band_index) for s in plan.slots["S1"][t]] == [(t, 1), (t, 2)] for t in range(12))
