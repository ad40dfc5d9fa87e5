"""The models bundled with the plugin: index, size, cards, test metrics reproduced by ONNX Runtime
on the real held-out samples, and "Describe model" on each of them."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from processing import run as processing_run

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.model_index import MODELS_DIR, load_index
from tests.tolerances import REGRESSION_METRIC_RTOL, STATS_RTOL, classification_metric_range
from training.datasets import load_dataset
from training.export import onnx_predict
from training.run import mapped_samples, metrics, split_data

REGIONAL = ("lfmc", "crop_type_europe", "crop_type_east_africa", "cropland")
EXPECTED = {f"{t}_{m}.onnx" for t in REGIONAL for m in ("s1", "s2", "s1_s2")}
ENTRIES = json.loads((MODELS_DIR / "index.json").read_text())["models"]


def test_index_lists_the_twelve_models_and_they_stay_small():
    index = json.loads((MODELS_DIR / "index.json").read_text())
    assert index["version"] == 1
    assert {m["file"] for m in index["models"]} == EXPECTED
    for m in index["models"]:
        assert set(m) == {"file", "task", "task_title", "modalities", "name", "title", "footprint"}
        sensors = "_".join(x.lower() for x in m["modalities"])
        assert m["file"] == f"{m['name']}.onnx" and m["name"].startswith(m["task"])
        assert m["name"].endswith(f"_{sensors}") and m["footprint"]
    assert sum((MODELS_DIR / f).stat().st_size for f in EXPECTED) < 5 * 1024 * 1024
    assert [b.file.name for b in load_index()] == [m["file"] for m in index["models"]]
    for b in load_index():  # the index's footprint, read for the choice by location, is the card's
        assert b.footprint == read_card(b.file).footprint


@pytest.fixture(scope="module")
def prepared(data_dir):
    cache = {}

    def get(dataset: str, seed: int):
        if (dataset, seed) not in cache:
            cache[dataset, seed] = split_data(load_dataset(dataset, data_dir), seed)
        return cache[dataset, seed]

    return get


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_bundled_model_reproduces_its_card_metric(entry, prepared):
    path = MODELS_DIR / entry["file"]
    card = read_card(path)
    assert (card.name, card.title, card.modalities) == (entry["name"], entry["title"], entry["modalities"])
    assert card.title and card.description and card.stac_mlm["mlm:input"]
    assert card.provenance.method in ("kd", "mdico", "dis2", "single")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tensors = [s.tensor for s in card.inputs] + [c.tensor for c in card.context]
    assert [i.name for i in session.get_inputs()] == tensors
    prep = prepared(card.provenance.dataset, card.provenance.seed)
    for spec in card.inputs:  # the card's scaling is the training split's statistics
        recomputed = prep.specs[spec.modality]
        np.testing.assert_allclose(spec.mean, recomputed.mean, rtol=STATS_RTOL, atol=1e-12)
        np.testing.assert_allclose(spec.std, recomputed.std, rtol=STATS_RTOL, atol=1e-12)
    # the card's figures count the test samples QGIS maps from the model's inputs (run.evaluate)
    mapped = mapped_samples(prep.data, prep.splits["test"], card.modalities)
    out = onnx_predict(path, card, prep.arrays["test"])[mapped]
    y = prep.arrays["test"]["y"][mapped]
    if card.task == "regression":
        assert card.output.unit == "%" and card.output.scale == 1.0 and card.output.offset == 0.0
        measured = metrics(card.task, out, y)
        for key, value in card.provenance.metrics.items():
            assert measured[key] == pytest.approx(value, rel=REGRESSION_METRIC_RTOL), key
        return
    assert np.allclose(out.sum(1), 1, atol=1e-5)
    onehot = np.eye(out.shape[1])
    for key, value in card.provenance.metrics.items():
        low, high = classification_metric_range(out, lambda p, k=key: metrics(card.task, onehot[p], y)[k])
        assert low - 1e-9 <= value <= high + 1e-9, (key, value, low, high)


def test_describe_model_shows_each_bundled_card(plugin, tmp_path):
    for entry in ENTRIES:
        html = tmp_path / f"{entry['file']}.html"
        result = processing_run(
            "eomissing:describemodel", {"MODEL": str(MODELS_DIR / entry["file"]), "OUTPUT_HTML": str(html)}
        )
        card = json.loads(result["CARD_JSON"])
        assert card["name"] == entry["name"]
        assert entry["title"] in html.read_text()
