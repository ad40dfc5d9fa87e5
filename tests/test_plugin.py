"""The plugin as QGIS loads it: in-process, through qgis_process from the checkout and from the zip."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from processing import run as processing_run
from qgis.core import QgsApplication

import eo_missing_qgis

from .conftest import ROOT, make_qgis_process
from .qgis_interface import TestInterface
from .tiny_models import card_dict, tiny_onnx


def _provider():
    return QgsApplication.processingRegistry().providerById("eomissing")


def test_load_and_unload_leave_nothing_behind(qgis_app):
    iface = TestInterface()
    plugin = eo_missing_qgis.classFactory(iface)
    plugin.initGui()
    assert _provider() is not None
    assert _provider().algorithm("describemodel") is not None
    assert len(iface.toolbar.actions()) == 1
    assert [m.title() for m in iface.raster_menu.findChildren(type(iface.raster_menu))]
    iface.toolbar.actions()[0].trigger()  # opens the panel
    assert plugin.panel is not None and plugin.panel.isVisibleTo(iface.window)
    plugin.unload()
    assert _provider() is None
    assert iface.toolbar.actions() == []
    assert iface.submenus == {} and iface.raster_menu.actions() == []
    assert plugin.panel is None


def test_describe_model_in_process(plugin, tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", card_dict("regression", ("S1", "S2"), steps=3))
    html = tmp_path / "card.html"
    result = processing_run("eomissing:describemodel", {"MODEL": str(model), "OUTPUT_HTML": str(html)})
    assert json.loads(result["CARD_JSON"])["task"] == "regression"
    assert "LFMC in %" in html.read_text()


def test_describe_model_refuses_a_file_without_card(plugin, tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x08\x07")  # a valid protobuf with only ir_version: no card
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="carries no model card"):
        processing_run("eomissing:describemodel", {"MODEL": str(bogus)})


def test_metadata_is_found_in_plugin_folder():
    meta = (ROOT / "eo_missing_qgis" / "metadata.txt").read_text()
    assert meta == (ROOT / "metadata.txt").read_text()
    for key in ("name", "qgisMinimumVersion=3.22", "qgisMaximumVersion=3.99", "hasProcessingProvider=yes",
                "icon=resources/icon.svg", "repository", "tracker", "homepage", "category", "tags"):
        assert key in meta
    assert (ROOT / "eo_missing_qgis" / "resources" / "icon.svg").is_file()


def test_qgis_process_lists_provider_from_checkout(qgis_process, tmp_path):
    assert "eomissing:describemodel" in qgis_process("list").stdout
    model = tiny_onnx(tmp_path / "m.onnx", card_dict("classification", ("S2",)))
    out = qgis_process("run", "eomissing:describemodel", "--", f"MODEL={model}").stdout
    assert "class 2: maize" in out


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(["bash", str(ROOT / "scripts" / "package.sh"), str(out)], check=True,
                   capture_output=True)
    (zip_path,) = out.glob("eo_missing_qgis.*.zip")
    return zip_path


def test_zip_contents(plugin_zip):
    assert plugin_zip.stat().st_size < 25 * 1024 * 1024
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert "eo_missing_qgis/metadata.txt" in names and "eo_missing_qgis/LICENSE" in names
    assert "eo_missing_qgis/resources/icon.svg" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "tests/" in n]
    assert all(n.startswith("eo_missing_qgis/") for n in names)
    meta = zipfile.ZipFile(plugin_zip).read("eo_missing_qgis/metadata.txt").decode()
    assert "commitSha1=" in meta and "version=" in meta


def test_qgis_process_loads_provider_from_zip(plugin_zip, tmp_path):
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    run = make_qgis_process(plugins, tmp_path / "profile")
    listing = run("list").stdout
    assert "eomissing:describemodel" in listing
    help_text = run("help", "eomissing:describemodel").stdout
    assert "model card" in help_text


def test_every_parameter_has_help(plugin):
    for algorithm in plugin.provider.algorithms():
        undocumented = [p.name() for p in algorithm.parameterDefinitions() if not p.help()]
        assert undocumented == [], f"{algorithm.id()} lacks help for {undocumented}"
        text = algorithm.shortHelpString()
        for p in algorithm.parameterDefinitions():
            assert p.description() in text


def test_plugin_loads_and_explains_without_onnxruntime_and_rasterio(tmp_path):
    """A user's QGIS Python without the runtime packages: the plugin loads, Describe model still
    works (it needs neither), and Predict says exactly what to install."""
    run = make_qgis_process(ROOT, tmp_path / "profile", with_venv=False)
    assert "eomissing:predict" in run("list").stdout
    model = tiny_onnx(tmp_path / "m.onnx", card_dict("classification", ("S2",)))
    assert "class 2: maize" in run("run", "eomissing:describemodel", "--", f"MODEL={model}").stdout
    proc = run("run", "eomissing:predict", "--", f"MODEL={model}", f"S2={model}",
               f"OUTPUT={tmp_path / 'out.tif'}", check=False)
    assert proc.returncode != 0
    assert "pip install onnxruntime rasterio" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
