"""The model chosen by the input's location (issue 14): two crop-type models of one task with
different footprints (the bundled European and East-African crop-type cards' hulls), the real cube in Belgium,
the same values placed in East Africa and in northern Italy; an explicit choice is kept and warned about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from affine import Affine
from qgis.core import Qgis, QgsProcessingFeedback, QgsRasterLayer
from rasterio.crs import CRS

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.dates import netcdf_band_dates
from eo_missing_qgis.core.footprint import layers_outline
from eo_missing_qgis.core.model_index import MODELS_DIR, footprint_entry, load_index, select_model
from tests import test_panel
from tests.engine_data import read_variable, variable, write_tif
from tests.tiny_models import card_dict, tiny_onnx

S2_VARS, S1_VARS, add_cube_layers = test_panel.S2_VARS, test_panel.S1_VARS, test_panel.add_cube_layers
panel, project = test_panel.panel, test_panel.project  # the panel's fixtures, with this module's models_dir
BUNDLED_REGIONS = {r.name: r for stem in ("crop_type_europe_s2", "crop_type_east_africa_s2")
                   for r in read_card(MODELS_DIR / f"{stem}.onnx").footprint}
BELGIUM = BUNDLED_REGIONS["Belgian croplands"]
EAST_AFRICA = BUNDLED_REGIONS["East-African croplands"]
#: (lon, lat) of the upper-left corner where the cube's values are placed: inside the East-African
#: hull (Uganda-Kenya border), and in northern Italy (about 650 km from the Belgian hull, far from both).
PLACES = {"east_africa": (34.0, 2.5), "italy": (10.0, 45.0)}
#: model file stem -> (region, modalities); each region has its own sensors, as regional models may.
MODELS = {"crop_type_eu_s2": (BELGIUM, ("S2",)), "crop_type_eu_s1_s2": (BELGIUM, ("S1", "S2")),
          "crop_type_ea_s1": (EAST_AFRICA, ("S1",)), "crop_type_ea_s2": (EAST_AFRICA, ("S2",))}


def region_dict(region) -> dict:
    return {"name": region.name, "polygon": [list(v) for v in region.polygon], "samples": region.samples}


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """Tiny crop-type models of two regions, with an index carrying their footprints (as bundle.py)."""
    folder = tmp_path / "models"
    folder.mkdir()
    entries = []
    for name, (region, combo) in MODELS.items():
        data = card_dict("classification", combo)
        where = "Europe" if region is BELGIUM else "East Africa"
        data.update(name=name, title=f"Crop type ({where}) from {' + '.join(combo)}", schema_version="1.2",
                    footprint=[region_dict(region)])
        card = read_card(tiny_onnx(folder / f"{name}.onnx", data))
        entries.append({"file": f"{name}.onnx", "task": "crop_type", "task_title": "Crop type",
                        "modalities": list(combo), "name": name, "title": card.title,
                        "footprint": footprint_entry(card)})
    (folder / "index.json").write_text(json.dumps({"version": 1, "models": entries}))
    return folder


def placed(tmp_path: Path, data_dir: Path, place: str, variables: list[str]) -> list[str]:
    """The cube's ``variables`` as GeoTIFFs (one per variable, named like it) placed at ``place``, each
    band's date as its description: the East-African models take calendar months and say no first one."""
    folder = tmp_path / place
    folder.mkdir(exist_ok=True)
    lon, lat = PLACES[place]
    out = []
    for v in variables:
        values, grid = read_variable(data_dir, v)
        with rasterio.open(variable(data_dir, v)) as ds:
            dates = netcdf_band_dates(ds.tags())
        out.append(write_tif(folder / f"{v}.tif", values, crs=CRS.from_epsg(4326),
                             transform=Affine(1e-4, 0, lon, 0, -1e-4, lat), nodata=grid["nodata"],
                             descriptions=dates))
    return out


def choose(models_dir: Path, sources: list[str], available: set[str]):
    return select_model(load_index(models_dir), "crop_type", available, outline=layers_outline(sources))


def test_the_belgian_cube_picks_the_european_models(models_dir, data_dir):
    cube = [variable(data_dir, v) for v in S2_VARS + S1_VARS]
    model, reason = choose(models_dir, cube, {"S1", "S2"})
    assert model.name == "crop_type_eu_s1_s2"  # sensors decide among the region's models
    assert reason.startswith("Input is in Belgian croplands, where 'Crop type (Europe) from "
                             "S1 + S2' was trained; not used here: 'Crop type (East Africa) from S1'")
    assert model.outside(layers_outline(cube)) is None
    model, _ = choose(models_dir, cube[:len(S2_VARS)], {"S2"})
    assert model.name == "crop_type_eu_s2"


def test_a_raster_in_east_africa_picks_the_east_african_models(models_dir, data_dir, tmp_path):
    s2 = placed(tmp_path, data_dir, "east_africa", S2_VARS)
    model, reason = choose(models_dir, s2, {"S2"})
    assert model.name == "crop_type_ea_s2" and reason.startswith("Input is in East-African croplands")
    model, _ = choose(models_dir, s2 + placed(tmp_path, data_dir, "east_africa", S1_VARS), {"S1", "S2"})
    assert model.name in ("crop_type_ea_s1", "crop_type_ea_s2")  # no S1 + S2 model trained there


def test_a_raster_elsewhere_picks_the_nearest_region_and_warns(models_dir, data_dir, tmp_path):
    outline = layers_outline(placed(tmp_path, data_dir, "italy", S2_VARS))
    model, reason = select_model(load_index(models_dir), "crop_type", {"S2"}, outline=outline)
    assert model.name == "crop_type_eu_s2"
    assert "Input is outside every region these models were trained on; the nearest is Belgian croplands, " \
           "about" in reason and "treat the map with caution" in reason
    warning = model.outside(outline)
    assert warning is not None and 500 < warning.km < 800, warning
    assert "this area is outside it (nearest training region: Belgian croplands" in warning.message


def test_processing_picks_by_location(plugin, models_dir, data_dir, tmp_path, monkeypatch):
    import processing

    from eo_missing_qgis.processing import predict

    monkeypatch.setattr(predict, "load_index", lambda: load_index(models_dir))
    runs = {"belgium": [variable(data_dir, v) for v in S2_VARS],
            "east_africa": placed(tmp_path, data_dir, "east_africa", S2_VARS)}
    for place, expected in (("belgium", "crop_type_eu_s2"), ("east_africa", "crop_type_ea_s2")):
        feedback = QgsProcessingFeedback()
        results = processing.run("eomissing:predict", {"TASK": "Crop type", "S2": runs[place],
                                                       "OUTPUT": str(tmp_path / f"{place}.tif")},
                                 feedback=feedback)
        assert results["MODEL_NAME"] == expected, feedback.textLog()
        assert "Input is in " in feedback.textLog()


def test_qgis_process_says_where_with_the_bundled_models(qgis_process, data_dir, tmp_path):
    """The bundled European and East-African crop-type models: the place is named in the log either way."""
    for place, sources, region in (
            ("belgium", [variable(data_dir, v) for v in S2_VARS], "Belgian croplands"),
            ("east_africa", placed(tmp_path, data_dir, "east_africa", S2_VARS), "East-African croplands")):
        proc = qgis_process("run", "eomissing:predict", "--", "TASK=Crop type",
                            f"OUTPUT={tmp_path / f'{place}.tif'}", *[f"S2={s}" for s in sources])
        where = "Europe" if place == "belgium" else "East Africa"
        chosen = f"where 'Crop type in {where} from Sentinel-2 with month and location' was trained"
        assert f"Input is in {region}, {chosen}" in proc.stdout


def test_panel_warns_before_run_and_keeps_an_explicit_choice(panel, project, data_dir, qtbot):
    add_cube_layers(project, data_dir, S2_VARS)
    assert "Input is in Belgian croplands" in panel.choice.text()
    assert panel.chosen.name == "crop_type_eu_s2" and panel.place_warning.isHidden()
    panel.model_combo.setCurrentIndex(panel.model_combo.findText("Crop type (East Africa) from S2"))
    assert panel.chosen.name == "crop_type_ea_s2" and panel.run_button.isEnabled()  # kept, only warned
    assert "Model picked: 'Crop type (East Africa) from S2'" in panel.choice.text()
    warning = panel.place_warning.text()
    assert warning.startswith("Warning: model crop_type_ea_s2 was trained on East-African croplands; this "
                              "area is outside it") and not panel.place_warning.isHidden()
    item = panel.iface.messageBar().currentItem()  # also said at warning level, before Run
    assert item.level() == Qgis.MessageLevel.Warning and "this area is outside it" in item.text()
    message, level = test_panel.run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Warning and "this area is outside it" in message
    added = [lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)
             and lyr.customProperty("eo_missing_qgis/model")]
    assert added  # the explicit model ran


def test_cli_picks_by_location_and_keeps_an_explicit_model(models_dir, data_dir, tmp_path, monkeypatch,
                                                           capsys):
    from eo_missing_qgis.core import cli, model_index

    monkeypatch.setattr(model_index, "load_index", lambda: load_index(models_dir))
    runs = {"belgium": [variable(data_dir, v) for v in S2_VARS],
            "east_africa": placed(tmp_path, data_dir, "east_africa", S2_VARS)}
    for place, expected in (("belgium", "crop_type_eu_s2"), ("east_africa", "crop_type_ea_s2")):
        args = ["predict", "--task", "crop_type", "--out", str(tmp_path / f"{place}.tif")]
        assert cli.main(args + [a for s in runs[place] for a in ("--input", s)]) == 0
        assert f"({expected}.onnx)" in capsys.readouterr().err
    explicit = ["predict", "--model", str(models_dir / "crop_type_ea_s2.onnx"),
                "--out", str(tmp_path / "ea.tif")]
    assert cli.main(explicit + [a for s in runs["belgium"] for a in ("--input", s)]) == 0
    err = capsys.readouterr().err
    assert "model crop_type_ea_s2: running on" in err
    assert ("Warning: model crop_type_ea_s2 was trained on East-African croplands; this area is outside "
            "it") in err


def test_panel_picks_the_east_african_model_for_layers_there(panel, project, data_dir, tmp_path):
    sources = placed(tmp_path, data_dir, "east_africa", S2_VARS)
    project.addMapLayers([QgsRasterLayer(s, Path(s).stem) for s in sources])
    assert panel.chosen.name == "crop_type_ea_s2", panel.choice.text()
    assert panel.choice.text().startswith("Input is in East-African croplands")
    assert panel.run_button.isEnabled() and panel.place_warning.isHidden()


def test_layers_without_a_place_leave_the_choice_to_the_sensors(models_dir, data_dir, tmp_path):
    values, _ = read_variable(data_dir, S2_VARS[0])
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", width=100, height=100, count=12,
                       dtype=values.dtype) as ds:
        ds.write(values)
    assert layers_outline([str(no_crs), str(tmp_path / "absent.tif")]) is None
    model, reason = select_model(load_index(models_dir), "crop_type", {"S2"}, outline=None)
    assert model.name == "crop_type_eu_s2" and "Input is" not in reason  # the first S2 model, as before
