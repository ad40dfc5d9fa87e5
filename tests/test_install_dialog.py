"""The "Install dependencies…" dialog and its entries in the plugin menu and the panel, on real
QGIS widgets with the real task manager (this venv already has onnxruntime and rasterio)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import eo_missing_qgis
from eo_missing_qgis.core.installer import InstallPlan, nvidia_gpu_present
from eo_missing_qgis.gui import install_dialog
from eo_missing_qgis.gui.install_dialog import InstallDialog

from .qgis_interface import TestInterface

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture
def dialog(qtbot, tmp_path):
    widget = InstallDialog(profile_dir=tmp_path)
    qtbot.addWidget(widget)
    return widget


def test_dialog_shows_the_plan_before_installing(dialog, tmp_path):
    text = dialog.log.toPlainText()
    assert f"Folder: {tmp_path / 'python' / 'dependencies' / PY}" in text
    assert "Already installed: onnxruntime" in text
    assert dialog.log.isReadOnly() and not dialog.cancel_button.isEnabled()


def test_install_runs_as_a_task_and_logs_the_result(qtbot, dialog, tmp_path):
    with qtbot.waitSignal(dialog.done, timeout=60_000) as signal:
        dialog.install_button.click()
        assert dialog.cancel_button.isEnabled() and not dialog.install_button.isEnabled()
    message, ok = signal.args
    assert ok and "Nothing to do" in message
    assert message in dialog.log.toPlainText()
    assert dialog.install_button.isEnabled() and not dialog.cancel_button.isEnabled()
    assert not (tmp_path / "python").exists()  # no pip run, no folder


@pytest.mark.skipif(nvidia_gpu_present(), reason="this machine has an NVIDIA driver")
def test_gpu_runtime_without_gpu_says_why(qtbot, dialog):
    with qtbot.waitSignal(dialog.done, timeout=10_000) as signal:
        dialog.gpu_button.click()
    message, ok = signal.args
    expected = "includes CoreML" if sys.platform == "darwin" else "no NVIDIA GPU found"
    assert not ok and expected in message and expected in dialog.log.toPlainText()


def test_plugin_menu_opens_the_dialog_and_unload_removes_both(qgis_app):
    iface = TestInterface()
    plugin = eo_missing_qgis.classFactory(iface)
    plugin.initGui()
    (menu,) = iface.submenus.values()
    (action,) = [a for a in menu.actions() if a.text() == "Install dependencies…"]
    action.trigger()
    assert install_dialog._dialog is not None and install_dialog._dialog.isVisible()
    plugin.unload()
    assert install_dialog._dialog is None
    assert iface.raster_menu.actions() == []


def test_plugin_appends_the_profile_dependencies_folder(qgis_app):
    from qgis.core import QgsApplication

    eo_missing_qgis.classFactory(TestInterface())
    folder = str(QgsApplication.qgisSettingsDirPath()).rstrip("/") + f"/python/dependencies/{PY}"
    own = str(Path(np.__file__).parent.parent)  # where this Python's numpy comes from
    assert folder in sys.path and sys.path.index(folder) > sys.path.index(own)  # QGIS's own win


def test_cancel_stops_the_install_and_says_so(qtbot, dialog, tmp_path):
    plan = InstallPlan(python=Path(sys.executable), target=tmp_path / "deps", requirements=["rasterio"],
                       constraints=[])
    with qtbot.waitSignal(dialog.done, timeout=60_000) as signal:
        dialog.start(lambda: plan)
        dialog.cancel_button.click()
    message, ok = signal.args
    assert not ok and "installation cancelled" in message
    assert dialog.install_button.isEnabled() and not (tmp_path / "deps" / "rasterio").exists()


def test_panel_offers_the_installer_only_when_something_is_missing(qtbot, qgis_app):
    from eo_missing_qgis.gui.panel import EoMissingPanel

    iface = TestInterface()
    panel = EoMissingPanel(iface, iface.mainWindow())
    qtbot.addWidget(panel)
    assert panel.install_button.isHidden()  # this venv has onnxruntime (and QGIS's GDAL)
    panel.install_button.click()
    assert install_dialog._dialog is not None and install_dialog._dialog is panel.install_dialog
    install_dialog.close_install_dialog()
    panel.teardown()
