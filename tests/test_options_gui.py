"""Models and options in Processing, qgis_process and the panel (issue 11): enum values by
number, the time left in the progress text, every failure reported as a failure."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import processing
import pytest
from onnx import numpy_helper
from qgis.core import Qgis, QgsProcessingFeedback, QgsProject

from eo_missing_qgis.gui.panel import PROGRESS_FORMAT, EoMissingPanel

from .qgis_interface import TestInterface
from .test_panel import S2_VARS, add_cube_layers, run_panel
from .test_predict_algorithm import cube_sources
from .tiny_models import card_dict, tiny_onnx

S1_VARS = ["S1-SIGMA0-VV", "S1-SIGMA0-VH"]


def fails_on_real_batches(path) -> None:
    """Make the tiny model reshape its output to the probe batch's (5, 3): it passes the probe,
    then ONNX Runtime fails on the first real batch (a runtime failure, not a user error)."""
    m = onnx.load(str(path))
    for node in m.graph.node:
        node.output[:] = ["per_pixel" if o == "probabilities" else o for o in node.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array([5, 3]), "fixed"))
    m.graph.node.append(onnx.helper.make_node("Reshape", ["per_pixel", "fixed"], ["probabilities"]))
    onnx.save(m, str(path))


@pytest.fixture
def panel_with(qtbot, tmp_path):
    """A panel over one tiny crop-type S2 model (``broken``: failing at run time)."""
    made = []

    def make(broken: bool) -> EoMissingPanel:
        models = tmp_path / "models"
        models.mkdir()
        data = card_dict("classification", ("S2",), steps=12)
        data["name"], data["title"] = "crop_type_s2", "Crop type from S2"
        path = tiny_onnx(models / "crop_type_s2.onnx", data)
        if broken:
            fails_on_real_batches(path)
        (models / "index.json").write_text(json.dumps({"version": 1, "models": [
            {"file": path.name, "task": "crop_type", "task_title": "Crop type", "modalities": ["S2"],
             "name": data["name"], "title": data["title"]}]}))
        iface = TestInterface()
        widget = EoMissingPanel(iface, iface.mainWindow(), models_dir=models)
        (tmp_path / "out").mkdir()
        widget.output_dir.setFilePath(str(tmp_path / "out"))
        qtbot.addWidget(widget)
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.teardown()
    QgsProject.instance().removeAllMapLayers()


def test_panel_reports_a_runtime_failure_as_a_failure(panel_with, data_dir, qtbot, tmp_path):
    # Used to say "Prediction cancelled; nothing was written." for any error but ValueError/OSError.
    panel = panel_with(broken=True)
    add_cube_layers(QgsProject.instance(), data_dir, S2_VARS)
    assert panel.run_button.isEnabled(), panel.choice.text()
    message, level = run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Critical, message
    assert message.startswith("Prediction failed (") and "cancelled" not in message
    assert "Reshape" in message or "reshape" in message, message
    assert list((tmp_path / "out").iterdir()) == []
    assert panel.run_button.isEnabled() and panel.progress.format() == PROGRESS_FORMAT


def test_panel_shows_the_time_left(panel_with, data_dir, qtbot):
    panel = panel_with(broken=False)
    add_cube_layers(QgsProject.instance(), data_dir, S2_VARS)
    shown = []
    panel.progress.setFormat = lambda text, set_format=panel.progress.setFormat: (
        shown.append(text), set_format(text))
    request = panel.request
    panel.request = lambda model: replace(request(model), tile_size=16)  # 49 tiles over the cube
    message, level = run_panel(panel, qtbot)
    assert level == Qgis.MessageLevel.Success, message
    estimates = [t for t in shown if t.endswith(" left")]
    assert estimates and "% done, " in estimates[0], shown
    assert shown[-1] == PROGRESS_FORMAT  # back to the plain percentage once done


def test_processing_shows_the_time_left_in_the_progress_text(plugin, data_dir, tmp_path):
    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.texts, self.infos = [], []

        def setProgressText(self, text):  # noqa: N802 - QGIS API
            self.texts.append(text)

        def pushInfo(self, info):  # noqa: N802 - QGIS API
            self.infos.append(info)

    feedback = Feedback()
    processing.run("eomissing:predict", {"TASK": "Crop type", "S2": cube_sources(data_dir, S2_VARS),
                                         "TILE_SIZE": 16, "OUTPUT": str(tmp_path / "out.tif")},
                   feedback=feedback)
    assert any(t.endswith(" left") and "% done, " in t for t in feedback.texts), feedback.texts
    assert sum("estimated time left" in i for i in feedback.infos) == 1, feedback.infos


def option_number(qgis_process, algorithm: str, option: str) -> str:
    """The number qgis_process's help gives an enum option ('- 1: Crop type')."""
    help_text = qgis_process("help", algorithm).stdout
    return next(line.split(":")[0].strip(" -\t") for line in help_text.splitlines()
                if line.strip().endswith(f": {option}"))


def test_qgis_process_accepts_enum_numbers(qgis_process, data_dir, tmp_path):
    # TASK=1 was "Incorrect parameter value for TASK", though qgis_process's help offers numbers.
    number = option_number(qgis_process, "eomissing:predict", "Crop type")
    args = ["run", "eomissing:predict", "--json", "--", f"TASK={number}", f"OUTPUT={tmp_path / 'out.tif'}"]
    args += [f"S1={s}" for s in cube_sources(data_dir, S1_VARS)]
    report = json.loads(qgis_process(*args).stdout)
    assert report["results"]["MODEL_NAME"] == "crop_type_europe_s1"
    by_name = json.loads(qgis_process(*args[:4], "TASK=Crop type", *args[5:]).stdout)
    assert by_name["results"]["MODEL_NAME"] == "crop_type_europe_s1"
    bundled = option_number(qgis_process, "eomissing:describemodel",
                            "Crop type in Europe from Sentinel-2 with month and location")
    card = json.loads(qgis_process("run", "eomissing:describemodel", "--json", "--",
                                   f"BUNDLED={bundled}").stdout)
    assert json.loads(card["results"]["CARD_JSON"])["name"] == "crop_type_europe_s2"
    wrong = qgis_process(*args[:4], "TASK=9", *args[5:], check=False)
    assert wrong.returncode != 0 and "TASK" in wrong.stdout + wrong.stderr
