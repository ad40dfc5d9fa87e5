"""Where a model is valid: the training footprint on the card, and the run that says it is outside."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from qgis.core import Qgis

from eo_missing_qgis.core.card import ModelCardError, card_from_dict, card_to_text, read_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.footprint import OUTSIDE_TAG, check_footprint
from eo_missing_qgis.core.model_index import MODELS_DIR
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.raster_io import outline_lonlat, read_header
from tests import test_panel
from tests.engine_data import cube_path, variable
from tests.tiny_models import card_dict, tiny_onnx

S2_VARS, add_cube_layers = test_panel.S2_VARS, test_panel.add_cube_layers
panel, project = test_panel.panel, test_panel.project  # the panel's fixtures, with this module's models_dir

WEST_US = {"name": "western-US shrublands", "samples": 40,
           "polygon": [[-122.0, 34.0], [-110.0, 34.0], [-110.0, 44.0], [-122.0, 44.0]]}


def footprint_card(*regions: dict, season=(4, 5, 6)) -> dict:
    d = card_dict("regression")
    d.update(schema_version="1.2", footprint=list(regions), season=list(season))
    return d


def cube_outline(data_dir) -> np.ndarray:
    return outline_lonlat(read_header(variable(data_dir, "S2-L2A-B04")).grid)


def test_footprint_round_trips_and_shows_in_the_report():
    card = card_from_dict(footprint_card(WEST_US))
    assert card.footprint[0].name == "western-US shrublands" and card.footprint[0].samples == 40
    assert card.season == (4, 5, 6)
    assert card_from_dict(card.to_dict()) == card
    text = card_to_text(card)
    assert "western-US shrublands (40 samples" in text and "April" in text


@pytest.mark.parametrize(("change", "field"), [
    ({"footprint": [{**WEST_US, "polygon": [[-200.0, 34.0]]}]}, "footprint[0].polygon[0]"),
    ({"footprint": [{**WEST_US, "samples": 0}]}, "footprint[0].samples"),
    ({"footprint": [{k: v for k, v in WEST_US.items() if k != "name"}]}, "footprint[0].name"),
    ({"season": [13]}, "season[0]"),
    ({"schema_version": "1.1"}, "footprint"),
])
def test_bad_footprint_names_the_field(change, field):
    with pytest.raises(ModelCardError) as err:
        card_from_dict({**footprint_card(WEST_US), **change})
    assert err.value.field == field


def test_old_card_without_footprint_says_nothing(data_dir):
    assert check_footprint(card_from_dict(card_dict("regression")), cube_outline(data_dir)) is None


def test_footprint_covering_the_cube_says_nothing(data_dir):
    outline = cube_outline(data_dir)
    lon, lat = outline[-1]  # the centre
    here = {"name": "Flanders fields", "samples": 5,
            "polygon": [[lon - 0.5, lat - 0.5], [lon + 0.5, lat - 0.5], [lon, lat + 0.5]]}
    assert check_footprint(card_from_dict(footprint_card(WEST_US, here)), outline) is None


def test_run_outside_the_footprint_says_so_and_records_it(tmp_path, data_dir):
    model = tiny_onnx(tmp_path / "west.onnx", footprint_card(WEST_US))
    messages: list[str] = []
    result = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "lfmc.tif",
                       options=RunOptions(tile_size=64), log=messages.append)
    said = [w for w in result.warnings if "western-US shrublands; this area is outside it" in w]
    assert len(said) == 1 and any(said[0] in m for m in messages)
    km = float(said[0].split("about ")[1].split(" km")[0].replace(",", ""))
    assert 7000 < km < 9500  # Belgium to California/Nevada
    with rasterio.open(result.outputs["prediction"]) as ds:
        assert "western-US shrublands" in ds.tags()[OUTSIDE_TAG]


def test_run_inside_the_footprint_records_nothing(tmp_path, data_dir):
    lon, lat = cube_outline(data_dir)[-1]
    here = {"name": "Flanders fields", "samples": 5,
            "polygon": [[lon - 1, lat - 1], [lon + 1, lat - 1], [lon + 1, lat + 1], [lon - 1, lat + 1]]}
    model = tiny_onnx(tmp_path / "here.onnx", footprint_card(here))
    result = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "lfmc.tif",
                       options=RunOptions(tile_size=64))
    assert not any("outside" in w for w in result.warnings)
    with rasterio.open(result.outputs["prediction"]) as ds:
        assert OUTSIDE_TAG not in ds.tags()



def test_bundled_lfmc_on_the_belgian_cube_is_outside(data_dir):
    found = check_footprint(read_card(MODELS_DIR / "lfmc_s2.onnx"), cube_outline(data_dir))
    assert found is not None and "this area is outside it" in found.message


def test_bundled_crop_type_on_the_belgian_cube_is_inside(data_dir):
    card = read_card(MODELS_DIR / "crop_type_europe_s2.onnx")
    assert [r.name for r in card.footprint] == ["Belgian croplands"]
    assert check_footprint(card, cube_outline(data_dir)) is None
    east_africa = read_card(MODELS_DIR / "crop_type_east_africa_s2.onnx")
    found = check_footprint(east_africa, cube_outline(data_dir))  # the other region's model would warn
    assert found is not None and "trained on East-African croplands; this area is outside it" in found.message


def test_export_footprint_clusters_regions_with_hulls():
    from training.export import footprint

    rng = np.random.default_rng(0)
    west = np.column_stack([rng.uniform(30, 45, 50), rng.uniform(-120, -100, 50)])
    belgium = np.array([[50.9, 3.0], [51.1, 4.5], [50.8, 5.5], [51.0, 4.0]])
    regions = footprint(np.vstack([west, belgium]), np.array(["lfmc"] * 50 + ["flanders"] * 4))
    assert [(r.name, r.samples) for r in regions] == [("western-US shrublands", 50),
                                                     ("Flanders (Belgium) croplands", 4)]
    hull = np.array(regions[1].polygon)
    assert len(hull) == 3  # (51.0, 4.0) lies inside the other three
    assert hull[:, 0].min() == pytest.approx(3.0) and hull[:, 1].max() == pytest.approx(51.1)


def test_bundled_lfmc_run_on_the_belgian_cube_says_so(tmp_path, data_dir):
    messages: list[str] = []
    result = run_model(MODELS_DIR / "lfmc_s2.onnx", [RasterInput(cube_path(data_dir))], tmp_path / "lfmc.tif",
                       log=messages.append)
    assert any("trained on western-US shrublands; this area is outside it" in m for m in messages)
    with rasterio.open(result.outputs["prediction"]) as ds:
        assert "western-US shrublands" in ds.tags()[OUTSIDE_TAG]


@pytest.fixture
def models_dir(tmp_path):
    """One tiny S2 crop-type model trained, says its card, in the western US."""
    data = card_dict("classification", ("S2",))
    data.update(name="crop_type_s2", title="Crop type from S2", schema_version="1.2", footprint=[WEST_US])
    tiny_onnx(tmp_path / "crop_type_s2.onnx", data)
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "models": [
        {"file": "crop_type_s2.onnx", "task": "crop_type", "task_title": "Crop type", "modalities": ["S2"],
         "name": "crop_type_s2", "title": data["title"]}]}))
    return tmp_path


def test_panel_warns_when_run_outside_the_footprint(panel, project, data_dir, qtbot):
    add_cube_layers(project, data_dir, S2_VARS)
    message, level = test_panel.run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Warning, message
    assert "done in" in message and "trained on western-US shrublands; this area is outside it" in message
