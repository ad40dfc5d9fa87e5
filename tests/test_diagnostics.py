"""Diagnostics: every section a bug report needs, a broken package reported instead of raised,
the provider of the last model, and the plugin menu's "Copy diagnostics" action."""

from __future__ import annotations

import sys

import numpy
import onnxruntime
import rasterio
from osgeo import gdal
from qgis.PyQt.QtWidgets import QApplication

import eo_missing_qgis
from eo_missing_qgis.core.diagnostics import diagnostics_text
from eo_missing_qgis.core.session import open_session
from eo_missing_qgis.plugin import MENU

from .qgis_interface import TestInterface
from .tiny_models import card_dict, tiny_onnx


def test_text_holds_every_section_with_this_machines_values():
    text = diagnostics_text("3.99.0-Test")
    expected = [
        "== EO missing modalities plugin ==\nversion: ",
        "== QGIS ==\nversion: 3.99.0-Test",
        f"== Python ==\nversion: {sys.version.splitlines()[0]}",
        f"executable: {sys.executable}",
        "sys.path:\n" + "\n".join(f"  {p}" for p in sys.path),
        f"== numpy ==\nversion: {numpy.__version__}",
        f"== onnxruntime ==\nversion: {onnxruntime.__version__}",
        f"device: {onnxruntime.get_device()}",
        f"available providers: {', '.join(onnxruntime.get_available_providers())}",
        f"build info: {onnxruntime.get_build_info()}",
        "libraries a CUDA 12 / cuDNN 9 build needs: libcuda.so.1 ",
        "CUDA_PATH: ",
        "LD_LIBRARY_PATH: ",
        f"== rasterio ==\nversion: {rasterio.__version__}\nits GDAL: {rasterio.__gdal_version__}",
        f"its PROJ: {rasterio.__proj_version__}",
        f"== GDAL (osgeo) ==\nversion: {gdal.__version__}",
        "PROJ: ",
        "== Execution provider of the last model ==",
    ]
    for part in expected:
        assert part in text, part


def test_a_missing_package_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    text = diagnostics_text()
    assert "== QGIS ==\nnot running inside QGIS" in text
    assert "== rasterio ==\nnot importable: " in text and "== GDAL (osgeo) ==\nversion: " in text


def test_the_last_model_opened_is_reported(tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", card_dict(modalities=("S2",)))
    open_session(model, device="cpu")
    assert "== Execution provider of the last model ==\ndevice cpu: ran on CPU\n" in diagnostics_text()


def test_plugin_menu_copies_diagnostics(qgis_app):
    iface = TestInterface()
    plugin = eo_missing_qgis.classFactory(iface)
    plugin.initGui()
    try:
        actions = {a.text(): a for a in iface.submenus[MENU].actions()}
        QApplication.clipboard().clear()
        actions["Copy diagnostics"].trigger()
        assert "== QGIS ==\nversion: 3." in QApplication.clipboard().text()
    finally:
        plugin.unload()
    assert iface.submenus == {}
