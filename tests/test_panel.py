"""The GUI panel on real QGIS widgets: layer recognition, model choice, run, cancel, errors."""

from __future__ import annotations

import json

import pytest
from qgis.core import Qgis, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer

from eo_missing_qgis.core.definitions import BANDS, Modality
from eo_missing_qgis.gui.panel import COL_DETAIL, COL_MODALITY, EoMissingPanel

from .qgis_interface import TestInterface
from .tiny_models import card_dict, tiny_onnx

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
    with qtbot.waitSignal(panel.finished, timeout=120_000) as signal:
        panel.run_button.click()
    message, level = signal.args
    assert level == Qgis.Success, message
    assert "done in" in message and "ExecutionProvider" in message
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


def test_error_is_shown_in_plain_words(panel, project, data_dir, qtbot, tmp_path):
    add_cube_layers(project, data_dir, S2_VARS)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    panel.output_dir.setFilePath(str(blocker))
    with qtbot.waitSignal(panel.finished, timeout=60_000) as signal:
        panel.run_button.click()
    message, level = signal.args
    assert level == Qgis.Critical
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
    assert level == Qgis.Info and "cancelled" in message
    assert list((tmp_path / "out").iterdir()) == []
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_unreadable_layer_is_listed_as_not_recognised(panel, project, tmp_path):
    from eo_missing_qgis.core.prediction import recognise_layer

    guess = recognise_layer(str(tmp_path / "gone.tif"), "gone")
    assert guess.modality is None and "gone.tif" in guess.reason
