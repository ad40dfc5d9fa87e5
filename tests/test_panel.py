"""The GUI panel on real QGIS widgets: layer recognition, model choice, run, cancel, errors."""

from __future__ import annotations

import json

import onnxruntime
import pytest
from qgis.core import Qgis, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QApplication

from eo_missing_qgis.core.definitions import BANDS, Modality
from eo_missing_qgis.core.prediction import LayerMapping
from eo_missing_qgis.gui.panel import (
    ALL,
    COL_BANDS,
    COL_DATE,
    COL_DETAIL,
    COL_FIRST,
    COL_MODALITY,
    EoMissingPanel,
)

from .engine_data import s2_stack, write_tif
from .qgis_interface import TestInterface
from .stack_data import ee_stack
from .test_layer_dates import sentinel_band_files
from .tiny_models import S2_BANDS, card_dict, tiny_onnx

S2_VARS = [f"S2-L2A-{b}" for b in BANDS[Modality.S2]]
S1_VARS = ["S1-SIGMA0-VV", "S1-SIGMA0-VH"]


@pytest.fixture
def models_dir(tmp_path):
    """Tiny real crop-type models for S1, S2 and S1 + S2, with an index like the bundled one."""
    entries = []
    for combo in (("S1",), ("S2",), ("S1", "S2")):
        data = card_dict("classification", combo, steps=12)
        name = f"crop_type_{'_'.join(combo).lower()}"
        data["name"], data["title"] = name, f"Crop type from {' + '.join(combo)}"
        tiny_onnx(tmp_path / f"{name}.onnx", data)
        entries.append({"file": f"{name}.onnx", "task": "crop_type", "task_title": "Crop type",
                        "modalities": list(combo), "name": name, "title": data["title"]})
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "models": entries}))
    return tmp_path


@pytest.fixture
def project():
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


def add_cube_layers(project, data_dir, variables):
    cube = data_dir / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
    layers = [QgsRasterLayer(f'NETCDF:"{cube}":{v}', v) for v in variables]
    assert all(layer.isValid() for layer in layers)
    project.addMapLayers(layers)
    return layers


def run_panel(panel, qtbot, timeout: int = 120_000) -> tuple[str, object]:
    """Press Run and wait for the panel's report: (message, message level)."""
    with qtbot.waitSignal(panel.finished, timeout=timeout) as signal:
        panel.run_button.click()
    return tuple(signal.args)


@pytest.fixture
def panel(qtbot, models_dir, project, tmp_path):
    iface = TestInterface()
    widget = EoMissingPanel(iface, iface.mainWindow(), models_dir=models_dir)
    widget.output_dir.setFilePath(str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    qtbot.addWidget(widget)
    yield widget
    widget.teardown()


def _modalities(panel) -> list[str]:
    return [panel.table.cellWidget(r, COL_MODALITY).currentText() for r in range(panel.table.rowCount())]


def test_recognition_and_choice_follow_the_layers(panel, project, data_dir):
    assert "Add layers of" in panel.choice.text() and not panel.run_button.isEnabled()
    add_cube_layers(project, data_dir, S2_VARS)
    assert _modalities(panel) == ["S2"] * 9
    assert "B04" in panel.table.item(2, COL_DETAIL).text()
    assert "Crop type from S2" in panel.choice.text() and panel.run_button.isEnabled()
    add_cube_layers(project, data_dir, S1_VARS)
    assert sorted(set(_modalities(panel))) == ["S1", "S2"]
    assert "Crop type from S1 + S2" in panel.choice.text()
    # The user corrects a recognition: calling the S1 layers 'ignore' falls back to the S2 model.
    for row, modality in enumerate(_modalities(panel)):
        if modality == "S1":
            panel.table.cellWidget(row, COL_MODALITY).setCurrentText("ignore")
    assert "Crop type from S2" in panel.choice.text()


def test_run_adds_styled_layers_and_reports(panel, project, data_dir, qtbot):
    add_cube_layers(project, data_dir, S2_VARS)
    message, level = run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Success, message
    assert "done in" in message and "ExecutionProvider" in message
    if onnxruntime.get_device() == "CPU":  # a CPU build says why the GPU is not used, with the fix
        assert "GPU not used: no GPU provider in this onnxruntime" in message
        assert "install onnxruntime-gpu" in message
    added = [lyr for lyr in project.mapLayers().values() if lyr.customProperty("eo_missing_qgis/model")]
    assert len(added) == 2
    classes = [lyr for lyr in added if isinstance(lyr.renderer(), QgsPalettedRasterRenderer)]
    assert len(classes) == 1 and classes[0].width() == 100
    assert panel.progress.value() == 100 and panel.run_button.isEnabled()


def test_missing_bands_are_listed_before_running(panel, project, data_dir):
    add_cube_layers(project, data_dir, S2_VARS[:4])  # B02-B05 only: the model needs nine bands
    assert "Crop type from S2" in panel.choice.text()
    assert "missing: S2 B06 (all 12 time steps)" in panel.choice.text()
    assert not panel.run_button.isEnabled()


def test_incomplete_s2_gives_way_to_the_complete_s1_model(panel, project, data_dir):
    """Issue 11: complete S1 and four S2 bands: the S1 model is chosen and can run, the text says
    what S2 lacked; adding the other S2 bands brings the S1 + S2 model back."""
    add_cube_layers(project, data_dir, S1_VARS + S2_VARS[:4])
    text = panel.choice.text()
    assert "Chosen: 'Crop type from S1'" in text and panel.run_button.isEnabled()
    assert "not 'Crop type from S1 + S2': its Sentinel-2 layers are incomplete (missing: S2 B06" in text
    add_cube_layers(project, data_dir, S2_VARS[4:])
    assert "Chosen: 'Crop type from S1 + S2'" in panel.choice.text() and panel.run_button.isEnabled()


def test_encoding_switch_is_shown_with_the_result(panel, project, data_dir, qtbot, tmp_path):
    """Issue 11: a float reflectance x 10000 stack is read as x 10000, and the message bar says so."""
    from .test_encodings import s2_float_stack

    layer = QgsRasterLayer(s2_float_stack(tmp_path, data_dir), "ee_s2")
    project.addMapLayer(layer)
    assert "Crop type from S2" in panel.choice.text() and panel.run_button.isEnabled()
    message, level = run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Warning, message
    assert "done in" in message and "they fit only 'reflectance x 10000 (L2A DN)', which is used" in message


def test_error_is_shown_in_plain_words(panel, project, data_dir, qtbot, tmp_path):
    add_cube_layers(project, data_dir, S2_VARS)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    panel.output_dir.setFilePath(str(blocker))
    message, level = run_panel(panel, qtbot, 60_000)
    assert level == Qgis.MessageLevel.Critical
    assert "not_a_folder" in message and "Traceback" not in message
    assert blocker.read_text().startswith("a file")  # nothing written over it


def test_cancel_stops_the_run_and_leaves_nothing(panel, project, data_dir, qtbot, tmp_path):
    from scripts.bench_inference import mosaic

    bands = [v.rsplit("-", 1)[-1] for v in S2_VARS]
    project.addMapLayers([QgsRasterLayer(mosaic(tmp_path, data_dir, b, 2000), f"S2-L2A-{b}") for b in bands])
    panel.output_dir.setFilePath(str(tmp_path / "out"))
    with qtbot.waitSignal(panel.finished, timeout=120_000) as signal:
        panel.run_button.click()
        qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=60_000)
        assert panel.cancel_button.isEnabled()
        panel.cancel_button.click()
    message, level = signal.args
    assert level == Qgis.MessageLevel.Info and "cancelled" in message
    assert list((tmp_path / "out").iterdir()) == []
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_unreadable_layer_is_listed_as_not_recognised(panel, project, tmp_path):
    from eo_missing_qgis.core.prediction import recognise_layer

    guess = recognise_layer(str(tmp_path / "gone.tif"), "gone")
    assert guess.modality is None and "gone.tif" in guess.reason


def test_combo_changes_and_run_reuse_headers_and_card(panel, project, data_dir, qtbot, monkeypatch):
    """Recognising the layers reads each header once; changing a modality and running reads no
    header again, and the card once per model (the run's session carries it)."""
    from .test_one_route import Opens

    opens = Opens(monkeypatch)
    layers = add_cube_layers(project, data_dir, S2_VARS + S1_VARS)
    for layer in layers:
        assert opens.of(layer.source()) == {"header": 1}, layer.source()
    assert len(opens.cards) == 1  # the S1 + S2 model, checked against the layers
    for row, modality in enumerate(_modalities(panel)):  # S1 -> ignore: the S2 model is chosen
        if modality == "S1":
            panel.table.cellWidget(row, COL_MODALITY).setCurrentText("ignore")
    assert "Crop type from S2" in panel.choice.text()
    # Each card is read once at most: on the way (VV ignored, VH not yet) the incomplete S1 + S2
    # and S1 models gave way to the S2 model, whose card was read then.
    assert max(opens.cards.values()) == 1 and len(opens.cards) == 3
    message, level = run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Success, message
    assert sum(opens.cards.values()) == 4  # once more by the run itself, styling reuses it
    for layer in layers:
        expected = {"header": 1, "pixels": 1} if "S2-L2A" in layer.source() else {"header": 1}
        assert opens.of(layer.source()) == expected, layer.source()


def test_copy_diagnostics_button_fills_the_clipboard(panel, qtbot):
    QApplication.clipboard().clear()
    with qtbot.waitSignal(panel.finished, timeout=10_000) as signal:
        panel.diagnostics_button.click()
    assert signal.args == ["Diagnostics copied to the clipboard.", int(Qgis.MessageLevel.Info)]
    text = QApplication.clipboard().text()
    assert f"== QGIS ==\nversion: {Qgis.version()} (Qt " in text
    for section in ("== Python ==", "== numpy ==", "== onnxruntime ==", "== rasterio ==",
                    "== GDAL (osgeo) ==", "== Execution provider of the last model =="):
        assert section in text


def test_multi_sensor_stack_gives_all_its_modalities(panel, project, data_dir, tmp_path):
    """It used to be recognised as S1 from its first band description, then refused."""
    stack = QgsRasterLayer(ee_stack(data_dir, tmp_path / "ee_export.tif"), "ee_export")
    project.addMapLayer(stack)
    assert _modalities(panel) == [ALL]
    assert "multi-sensor stack" in panel.table.item(0, COL_DETAIL).text()
    assert "Crop type from S1 + S2" in panel.choice.text() and panel.run_button.isEnabled()
    panel.table.cellWidget(0, COL_MODALITY).setCurrentText("S1")
    assert "Crop type from S1" in panel.choice.text() and panel.run_button.isEnabled()


def test_bands_and_first_step_columns_say_what_a_layer_holds(panel, project, data_dir, tmp_path):
    values = s2_stack(data_dir).reshape(108, 100, 100)
    layer = QgsRasterLayer(write_tif(tmp_path / "export_2021.tif", values, nodata=65535), "export_2021")
    project.addMapLayer(layer)
    assert _modalities(panel) == ["ignore"] and not panel.run_button.isEnabled()
    panel.table.cellWidget(0, COL_MODALITY).setCurrentText("S2")
    assert "say which band(s) it holds" in panel.choice.text() and not panel.run_button.isEnabled()
    panel.table.item(0, COL_BANDS).setText(",".join(S2_BANDS))
    assert panel.run_button.isEnabled(), panel.choice.text()
    panel.table.item(0, COL_FIRST).setText("2")
    assert "export_2021 has 12 time steps but the model needs 12 (from step 2 on it has 11)" \
        in panel.choice.text() and not panel.run_button.isEnabled()
    panel.table.item(0, COL_FIRST).setText("first")
    assert "first time step of export_2021 must be a whole number" in panel.choice.text()
    panel.table.item(0, COL_FIRST).setText("1")
    assert panel.run_button.isEnabled()
    assert panel.request(panel.chosen).mapping[layer.source()] == LayerMapping(tuple(S2_BANDS), 1)
    panel.refresh()  # typed texts survive a refresh
    assert panel.table.item(0, COL_FIRST).text() == "1" and panel.run_button.isEnabled()


def test_output_grid_is_the_finest_layer_or_the_one_chosen(panel, project, data_dir, qtbot, tmp_path):
    """10 m S2 with 20 m S1 (listed first) gives a 10 m map; choosing an S1 layer, a 20 m one."""
    from tests.test_outputs import s1_at_20m

    coarse = [QgsRasterLayer(p, name) for p, name in zip(s1_at_20m(data_dir, tmp_path), S1_VARS, strict=True)]
    project.addMapLayers(coarse)
    add_cube_layers(project, data_dir, S2_VARS)
    widths = []
    for grid in ("the finest input", S1_VARS[0]):
        panel.grid_combo.setCurrentText(grid)
        with qtbot.waitSignal(panel.finished, timeout=120_000) as signal:
            panel.run_button.click()
        assert signal.args[1] == Qgis.MessageLevel.Success, signal.args[0]
        added = [lyr for lyr in project.mapLayers().values()
                 if isinstance(lyr.renderer(), QgsPalettedRasterRenderer)]
        widths.append(sorted(lyr.width() for lyr in added))
    assert widths == [[100], [50, 100]]


def test_date_column_shows_the_recognised_date_and_takes_a_typed_one(panel, project, tmp_path, data_dir):
    project.addMapLayers([QgsRasterLayer(layer.path, layer.path.rsplit('/', 1)[-1])
                          for layer in sentinel_band_files(tmp_path, data_dir)])
    rows = range(panel.table.rowCount())
    assert [panel.table.item(r, COL_DATE).text() for r in rows] == ["2021-06-12"] * len(S2_BANDS)
    assert "the layers give 1 of 12 months: 2021-06" in panel.choice.text()
    assert not panel.run_button.isEnabled()
    panel.table.item(0, COL_DATE).setText("2021-13-01")
    assert "date '2021-13-01' is not a date" in panel.choice.text()
    for r in rows:
        panel.table.item(r, COL_DATE).setText("2021-07-02")
    assert "the layers give 1 of 12 months: 2021-07" in panel.choice.text()
    assert {m.dates for m in panel.request(panel.chosen).mapping.values()} == {("2021-07-02",)}
    panel.refresh()  # typed dates survive a refresh
    assert panel.table.item(0, COL_DATE).text() == "2021-07-02"


def test_a_single_date_runs_on_the_bundled_time_flexible_model(qtbot, project, tmp_path, data_dir):
    """Sentinel-2 band files of one date (10 m and 20 m, dated by their names) on the bundled
    models: the European crop-type model runs from one month and the report says so."""
    from eo_missing_qgis.core.model_index import MODELS_DIR

    widget = EoMissingPanel(TestInterface(), None, models_dir=MODELS_DIR)
    qtbot.addWidget(widget)
    widget.output_dir.setFilePath(str(tmp_path))
    widget.task_combo.setCurrentIndex(widget.task_combo.findData("crop_type"))
    project.addMapLayers([QgsRasterLayer(layer.path, layer.path.rsplit('/', 1)[-1])
                          for layer in sentinel_band_files(tmp_path, data_dir)])
    assert "Crop type in Europe from Sentinel-2" in widget.choice.text()
    message, level = run_panel(widget, qtbot)
    assert level == Qgis.MessageLevel.Success, message
    assert "1 of 12 months: 2021-06; missing: 2020-11" in message
    widget.teardown()
