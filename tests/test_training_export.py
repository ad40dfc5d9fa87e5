"""Export of every method's student to ONNX with its card, parity with torch, determinism."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.definitions import MODALITIES
from eo_missing_qgis.core.model_index import MODELS_DIR
from training.config import dataset_method_config
from training.datasets import load_dataset
from training.export import (
    IR_VERSION,
    OPSET,
    ExportError,
    as_ir,
    export_run,
    onnx_predict,
    stac_item,
    to_onnx,
)
from training.models import Predictor
from training.run import evaluate, fit, split_data

TINY = ["net.filters=8", "max_epochs=1"]


@pytest.fixture(scope="module")
def setups(data_dir):
    out = {}
    for name in ("lfmc", "crop_type"):
        prep = split_data(load_dataset(name, data_dir), seed=0)
        teacher, _ = fit(dataset_method_config(name, "teacher", TINY), prep)
        out[name] = (prep, teacher)
    return out


def _train_and_export(setups, dataset, method, modalities, path):
    prep, teacher = setups[dataset]
    cfg = replace(dataset_method_config(dataset, method, TINY), modalities=list(modalities))
    module, _ = fit(cfg, prep, teacher.model.state_dict())
    run = {
        "config": asdict(cfg),
        "steps": prep.data.steps,
        "stats": {m: {"mean": list(s.mean), "std": list(s.std)} for m, s in prep.specs.items()},
        "metrics": {"test": evaluate(module, prep, "test")},
    }
    card, diff = export_run(module, run, prep, path, f"{dataset}_{method}")
    return module, card, diff, prep


@pytest.mark.parametrize(
    ("dataset", "method", "modalities"),
    [
        ("crop_type", "single", ["S1"]),
        ("crop_type", "kd", ["S2"]),
        ("crop_type", "mdico", ["S1"]),
        ("crop_type", "dis2", ["S2"]),
        ("lfmc", "dis2", ["S1"]),
        ("lfmc", "mdico", ["S2"]),
        ("lfmc", "kd", ["S1", "S2"]),
        ("lfmc", "teacher", list(MODALITIES)),
    ],
)
def test_every_method_exports_a_faithful_graph_with_its_card(setups, tmp_path, dataset, method, modalities):
    path = tmp_path / "m.onnx"
    _, card, diff, prep = _train_and_export(setups, dataset, method, modalities, path)
    assert diff <= 1e-4
    model = onnx.load(str(path))
    assert model.opset_import[0].version == OPSET and model.ir_version == IR_VERSION == 9  # ORT >= 1.15
    assert not any(n.metadata_props for n in model.graph.node)  # no torch stack traces (an IR 10 field)
    item = json.loads(path.with_suffix(".stac.json").read_text())
    assert item == json.loads(json.dumps(stac_item(card, "m.onnx")))
    assert [i.name for i in model.graph.input] == [m.lower() for m in modalities]
    assert read_card(path) == card
    assert card.provenance.method == method and card.provenance.commit
    mlm = card.stac_mlm
    assert [i["name"] for i in mlm["mlm:input"]] == [s.tensor for s in card.inputs]
    assert mlm["mlm:input"][0]["value_scaling"][0]["type"] == "z-score"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # dynamic batch
        feeds = {s.tensor: prep.arrays["test"][s.modality][:n] for s in card.inputs}
        out = session.run(None, feeds)[0]
        assert out.shape == (n, prep.data.info.n_outputs)
    if card.task == "classification":
        assert card.output.tensor == "probabilities" and np.allclose(out.sum(1), 1, atol=1e-5)
        assert "classification:classes" in mlm["mlm:output"][0]
    else:
        assert card.output.tensor == "prediction" and card.output.scale == 1 and card.output.unit == "%"
        pred = onnx_predict(path, card, prep.arrays["test"])
        assert 30 < float(pred.mean()) < 250  # physical LFMC %, not standardised


def test_a_teacher_part_in_the_graph_is_an_error(setups, tmp_path):
    module, card, _, _ = _train_and_export(setups, "crop_type", "kd", ["S2"], tmp_path / "ok.onnx")
    leaking = Predictor(module.teacher, MODALITIES, "classification")
    with pytest.raises(ExportError, match="teacher-only parts"):
        to_onnx(leaking, card, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_export_is_deterministic(setups, tmp_path):
    outputs = []
    for k in range(2):
        path = tmp_path / f"run{k}.onnx"
        _, card, _, prep = _train_and_export(setups, "crop_type", "single", ["S2"], path)
        outputs.append(onnx_predict(path, card, prep.arrays["test"]))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1e-6)


def test_a_graph_needing_ir10_is_not_stamped_ir9():
    model = onnx.load(str(MODELS_DIR / "lfmc_s1.onnx"))
    model.graph.initializer[0].data_type = onnx.TensorProto.INT4
    with pytest.raises(ExportError, match="IR 10 features"):
        as_ir(model)
