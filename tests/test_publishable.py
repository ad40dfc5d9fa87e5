"""What a published plugin shows outside QGIS: the STAC Item beside each bundled model, the keys
Deepness reads, and the metadata.txt / changelog the plugin repository displays."""

from __future__ import annotations

import json
import subprocess  # nosec B404 - runs scripts/package.sh of this checkout
import zipfile
from configparser import ConfigParser

import jsonschema
import pystac
import pytest
from pystac.extensions.mlm import (
    AcceleratorType,
    AssetDetailedMLMExtension,
    MLMExtension,
    TaskType,
    ValueScalingType,
)
from pystac.validation.local_validator import get_local_schema_cache

from eo_missing_qgis.core.card import read_card, read_metadata_props
from eo_missing_qgis.core.model_index import MODELS_DIR
from tests.conftest import ROOT
from training.export import MLM_SCHEMA, stac_item

BUNDLED = sorted(MODELS_DIR.glob("*.onnx"))
ITEM_SCHEMA = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
#: Required by the MLM specification (its README's field tables): Item properties, each input and
#: output object, and the model asset. No package on PyPI ships the MLM JSON schema itself.
MLM_REQUIRED = ("mlm:name", "mlm:architecture", "mlm:tasks", "mlm:input", "mlm:output")
INPUT_REQUIRED = ("name", "bands", "input")
OUTPUT_REQUIRED = ("name", "tasks", "result")
STRUCTURE_REQUIRED = ("shape", "dim_order", "data_type")


def _core_validator() -> jsonschema.Draft7Validator:
    """The STAC 1.1.0 Item schema pystac ships, references resolved offline."""
    cache = get_local_schema_cache()
    resolver = jsonschema.RefResolver(ITEM_SCHEMA, cache[ITEM_SCHEMA], store=cache)
    return jsonschema.Draft7Validator(cache[ITEM_SCHEMA], resolver=resolver)


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_stac_item_beside_each_bundled_model_is_valid(path):
    card = read_card(path)
    item = json.loads(path.with_suffix(".stac.json").read_text())
    assert item == json.loads(json.dumps(stac_item(card, path.name)))  # what the export writes
    errors = [e.message for e in _core_validator().iter_errors(item)]
    assert errors == []
    assert MLM_SCHEMA in item["stac_extensions"]

    props = item["properties"]
    assert all(key in props for key in MLM_REQUIRED)
    sensors = [s.tensor for s in card.inputs]
    for obj in props["mlm:input"]:
        assert all(k in obj for k in INPUT_REQUIRED) and all(k in obj["input"] for k in STRUCTURE_REQUIRED)
        if obj["name"] in sensors:  # standardized bands; context inputs are computed by the plugin, unscaled
            assert obj["value_scaling"] and len(obj["value_scaling"]) == len(obj["bands"])
            assert {v["type"] for v in obj["value_scaling"]} <= {t.value for t in ValueScalingType}
        else:
            assert "value_scaling" not in obj and obj["description"].startswith("context input")
    assert set(props["mlm:tasks"]) <= {t.value for t in TaskType}
    assert props["mlm:accelerator"] in {a.value for a in AcceleratorType}
    for obj in props["mlm:output"]:
        assert all(k in obj for k in OUTPUT_REQUIRED) and all(k in obj["result"] for k in STRUCTURE_REQUIRED)
    # pystac's MLM extension reads every field back with its types and enums.
    stac = pystac.Item.from_dict(item)
    mlm = MLMExtension.ext(stac)
    assert mlm.mlm_name == card.name and mlm.architecture == "time-as-channels MLP"
    assert [i.name for i in mlm.input] == sensors + [c.tensor for c in card.context]
    assert [o.name for o in mlm.output] == [card.output.tensor]
    assert mlm.accelerator == "cuda" and mlm.accelerator_constrained is False  # GPU if any, not only
    asset = stac.assets["model"]
    assert "mlm:model" in asset.roles and AssetDetailedMLMExtension.ext(asset).artifact_type == "onnx"
    assert (path.parent / asset.href).resolve() == path.resolve()

    expected_task = "semantic-segmentation" if card.task == "classification" else "regression"
    assert mlm.tasks == [expected_task] and props["mlm:output"][0]["tasks"] == [expected_task]
    assert props["mlm:output"][0]["post_processing_function"] is None  # the graph outputs probabilities
    assert "softmax" not in json.dumps(props["mlm:output"][0].get("post_processing_function"))


def test_core_schema_check_rejects_a_broken_item():
    item = json.loads(BUNDLED[0].with_suffix(".stac.json").read_text())
    del item["properties"]["datetime"]
    item["assets"]["model"].pop("href")
    assert len(list(_core_validator().iter_errors(item))) >= 1


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_deepness_keys_parse_as_json(path):
    """Deepness reads each of these keys with json.loads."""
    props = read_metadata_props(path)
    parsed = {k: json.loads(props[k]) for k in ("model_type", "tile_size", "standardization_mean")}
    assert parsed["model_type"] in ("Segmentor", "Regressor") and parsed["tile_size"] > 0
    if read_card(path).task == "classification":
        assert isinstance(json.loads(props["class_names"]), dict)


def _metadata(text: str) -> dict[str, str]:
    parser = ConfigParser(interpolation=None)
    parser.read_string(text)
    return dict(parser["general"])


def test_about_says_how_to_install_and_what_the_models_are():
    about = _metadata((ROOT / "metadata.txt").read_text())["about"]
    for needed in ("OSGeo4W Shell", "macOS", "Linux", "onnxruntime", "rasterio", "onnxruntime-gpu",
                   "onnxruntime-directml", "GPL-2.0-or-later", "WorldCereal", "presto"):
        assert needed in about, needed


def test_changelog_reaches_the_zip_metadata(tmp_path):
    version = _metadata((ROOT / "metadata.txt").read_text())["version"]
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "package.sh"), str(tmp_path)],  # nosec B603 B607
                         capture_output=True, text=True, timeout=300, check=True)
    assert "eo_missing_qgis" in out.stdout
    (zip_path,) = tmp_path.glob("eo_missing_qgis.*.zip")
    with zipfile.ZipFile(zip_path) as z:
        meta = _metadata(z.read("eo_missing_qgis/metadata.txt").decode())
        names = set(z.namelist())
    assert meta["qgismaximumversion"] == "4.99"
    assert version in meta["changelog"] and "IR 9" in meta["changelog"]
    assert {f"eo_missing_qgis/models/{p.stem}.stac.json" for p in BUNDLED} <= names
