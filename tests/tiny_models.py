"""Small but real ONNX models with valid cards, built in tests (no training needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eo_missing_qgis.core.card import ModelCard, card_from_dict, embed_card
from eo_missing_qgis.core.definitions import BANDS, Modality

S2_BANDS = list(BANDS[Modality.S2])
S1_BANDS = list(BANDS[Modality.S1])


def input_dict(modality: str) -> dict:
    if modality == "S1":
        bands, unit, mean, std, sensor = S1_BANDS, "dB", [-11.0, -18.0], [3.0, 3.5], "Sentinel-1 GRD"
    else:
        bands, unit, sensor = S2_BANDS, "reflectance", "Sentinel-2 L2A"
        mean, std = [0.1] * len(bands), [0.05] * len(bands)
    return {
        "tensor": modality.lower(),
        "modality": modality,
        "sensor": sensor,
        "layout": "NTC",
        "bands": [{"name": b, "unit": unit} for b in bands],
        "scaling": {"method": "standardize", "mean": mean, "std": std},
    }


def card_dict(task: str = "classification", modalities=("S2",), steps: int = 12) -> dict:
    if task == "classification":
        output = {
            "tensor": "probabilities",
            "name": "crop type",
            "activation": "softmax",
            "classes": [
                {"id": 1, "name": "cereals", "color": "#e6c229"},
                {"id": 2, "name": "maize", "color": "#f17105"},
                {"id": 3, "name": "grassland", "color": "#6aa84f"},
            ],
        }
    else:
        output = {"tensor": "prediction", "name": "LFMC", "unit": "%", "range": [30.0, 320.0],
                  "scale": 1.0, "offset": 0.0}
    return {
        "schema_version": "1.0",
        "name": f"tiny_{task}_{'_'.join(modalities).lower()}",
        "title": f"Tiny {task} test model",
        "description": "Built in the tests; weights are fixed, not trained.",
        "task": task,
        "inputs": [input_dict(m) for m in modalities],
        "time": {"steps": steps, "step": "month", "alignment": "relative", "first_month": None},
        "halo": 0,
        "tile_size": 256,
        "output": output,
        "provenance": {"dataset": "none", "method": "fixed", "version": "0.0.1", "seed": 0,
                       "commit": "", "created": "", "metrics": {"accuracy": 0.5}},
    }


def tiny_onnx(path: Path, card: ModelCard | dict, opset: int = 17) -> Path:
    """A graph taking the card's inputs (N, T, C): time-mean, concat, linear layer, softmax."""
    card = card if isinstance(card, ModelCard) else card_from_dict(card)
    rng = np.random.default_rng(0)
    nodes, inits, graph_inputs, pooled = [], [], [], []
    for spec in card.inputs:
        c = len(spec.bands)
        graph_inputs.append(helper.make_tensor_value_info(
            spec.tensor, TensorProto.FLOAT, ["batch", card.time.steps, c]))
        nodes.append(helper.make_node("ReduceMean", [spec.tensor], [f"{spec.tensor}_mean"],
                                      axes=[1], keepdims=0))
        pooled.append(f"{spec.tensor}_mean")
    nodes.append(helper.make_node("Concat", pooled, ["features"], axis=1))
    n_in = sum(len(s.bands) for s in card.inputs)
    n_out = len(card.output.classes) if card.task == "classification" else 1
    inits += [numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "w"),
              numpy_helper.from_array(np.zeros(n_out, np.float32), "b")]
    nodes.append(helper.make_node("Gemm", ["features", "w", "b"], ["raw"]))
    if card.task == "classification":
        nodes.append(helper.make_node("Softmax", ["raw"], [card.output.tensor], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["raw"], [card.output.tensor]))
    out = helper.make_tensor_value_info(card.output.tensor, TensorProto.FLOAT, ["batch", n_out])
    graph = helper.make_graph(nodes, card.name, graph_inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    embed_card(model, card)
    onnx.save(model, str(path))
    return Path(path)
