"""Export a trained student to ONNX with its model card, and check parity with torch.

The graph takes one float32 tensor per modality, (batch, time, bands) = the card's NTC layout,
already standardised by :func:`eo_missing_qgis.core.preprocessing.standardize`; it returns
``probabilities`` (batch, K) after softmax in the card's class order, or ``prediction``
(batch, 1) in physical units (card scale 1, offset 0).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess  # nosec B404 - only `git rev-parse HEAD`
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from eo_missing_qgis.core.card import (
    ModelCard,
    OutputSpec,
    Provenance,
    TimeSpec,
    card_from_dict,
    embed_card,
    read_card,
)

from . import __version__
from .datasets import TaskInfo
from .models import Predictor
from .run import SplitData, specs_from_dict

OPSET = 18
#: ONNX IR version written. torch writes IR 10, which onnxruntime < 1.18 refuses; nothing in these
#: graphs needs 10 (no 4-bit types, no function overloads), and IR 9 is read from onnxruntime 1.15 on
#: (eo_missing_qgis.core.runtime_version).
IR_VERSION = 9
#: Tensor element types after FLOAT8E5M2FNUZ (20) are INT4/UINT4 (IR 10) and newer.
_LAST_IR9_TYPE = 20
#: The MLM extension version the STAC Items follow (the one pystac's MLM extension writes).
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
ATOL = 1e-4
METHOD_TITLES = {
    "single": "baseline",
    "teacher": "all-modality teacher",
    "kd": "distilled",
    "mdico": "MDiCo co-learned",
    "dis2": "DIS2-distilled",
}


class ExportError(RuntimeError):
    """The model cannot be exported as a plugin model (teacher parts, parity failure, ...)."""


def check_student(predictor: nn.Module) -> None:
    """Refuse graphs that contain a guide network: the plugin gets the student only."""
    names = [name for name, sub in predictor.named_modules() if getattr(sub, "teacher_part", False)]
    if names:
        raise ExportError(
            f"the exported graph would contain teacher-only parts ({', '.join(names[:3])}); "
            "export the student's inference path (method.predictor()), not the teacher"
        )


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,  # nosec B603 B607
            cwd=Path(__file__).resolve().parent,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _stac_mlm(card: ModelCard) -> dict:
    """The card as STAC-MLM fields. The maps are per pixel, so a classifier is a semantic
    segmentation; the graph already outputs probabilities, so there is no post-processing."""
    o = card.output
    inputs = [
        {
            "name": s.tensor,
            "bands": s.band_names,
            "input": {
                "shape": [-1, card.time.steps, len(s.bands)],
                "dim_order": ["batch", "time", "bands"],
                "data_type": "float32",
            },
            "value_scaling": [
                {"type": "z-score", "mean": m, "stddev": d} for m, d in zip(s.mean, s.std, strict=True)
            ],
        }
        for s in card.inputs
    ] + [
        {
            "name": c.tensor,
            "bands": [],
            "input": {
                "shape": [-1 if d == "batch" else d for d in c.shape(card.time.steps)],
                "dim_order": ["batch", "time", "values"][:len(c.shape(card.time.steps))]
                if c.kind != "latlon" else ["batch", "values"],
                "data_type": "float32",
            },
            "description": f"context input: {c.kind} encoded {c.encoding}, computed by the plugin",
        }
        for c in card.context
    ]
    if card.task == "classification":
        output = {
            "name": o.tensor,
            "tasks": ["semantic-segmentation"],
            "result": {
                "shape": [-1, len(o.classes)],
                "dim_order": ["batch", "class"],
                "data_type": "float32",
            },
            "classification:classes": [
                {"value": c.id, "name": c.name, "color_hint": c.color[1:]} for c in o.classes
            ],
            "description": "class probabilities (the graph applies softmax); the class map is their argmax",
            "post_processing_function": None,
        }
    else:
        output = {
            "name": o.tensor,
            "tasks": ["regression"],
            "result": {"shape": [-1, 1], "dim_order": ["batch", "value"], "data_type": "float32"},
            "description": f"{o.name} in {o.unit}",
            "post_processing_function": None,
        }
    return {
        "mlm:name": card.name,
        "mlm:architecture": "TempCNN",
        "mlm:tasks": output["tasks"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:pretrained": False,
        "mlm:pretrained_source": None,
        # Intended for an NVIDIA GPU when there is one, but not constrained to it: ONNX Runtime
        # runs the model on CPU (or DirectML/CoreML) as well. "amd64" would mean "never uses one".
        "mlm:accelerator": "cuda",
        "mlm:accelerator_constrained": False,
        "mlm:accelerator_summary": "ONNX Runtime: CUDA when available, else DirectML/CoreML or CPU",
        "mlm:input": inputs,
        "mlm:output": [output],
    }


def with_stac_mlm(card: ModelCard) -> ModelCard:
    """``card`` with its STAC-MLM block computed from its own fields."""
    return ModelCard(**{**card.__dict__, "stac_mlm": _stac_mlm(card)})


def stac_item(card: ModelCard, model_file: str) -> dict:
    """A STAC Item (core 1.1.0 + MLM) describing the model, with the ONNX file as its model asset.

    There is no geometry: a model is not tied to a footprint, and the training data's extent is
    named in the description instead."""
    created = card.provenance.created or dt.date.today().isoformat()
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA],
        "id": card.name,
        "geometry": None,
        "properties": {
            "title": card.title,
            "description": card.description,
            "datetime": f"{created}T00:00:00Z",
            "license": "GPL-2.0-or-later",
            **card.stac_mlm,
        },
        "links": [],
        "assets": {
            "model": {
                "href": f"./{model_file}",
                "title": f"{card.title} (ONNX, IR {IR_VERSION}, opset {OPSET}, model card embedded)",
                "type": "application/octet-stream; framework=onnx; profile=onnx",
                "roles": ["mlm:model"],
                "mlm:artifact_type": "onnx",
            }
        },
    }


def write_stac_item(card: ModelCard, model_path: Path) -> Path:
    """``<model>.stac.json`` next to the model file."""
    out = model_path.with_suffix(".stac.json")
    out.write_text(json.dumps(stac_item(card, model_path.name), indent=1) + "\n", encoding="utf-8")
    return out


def as_ir(model: onnx.ModelProto) -> None:
    """Stamp ``model`` at :data:`IR_VERSION`, dropping the per-node debug metadata (torch's stack
    traces and module paths, an IR 10 field); refuse a graph that uses IR 10 types or overloads."""
    graph = model.graph
    typed = [*graph.input, *graph.output, *graph.value_info]
    elem_types = [v.type.tensor_type.elem_type for v in typed] + [t.data_type for t in graph.initializer]
    overloads = [n.overload for n in graph.node] + [f.overload for f in model.functions]
    if any(t > _LAST_IR9_TYPE for t in elem_types) or any(overloads):
        raise ExportError(f"the graph uses IR 10 features (4-bit types or function overloads); it "
                          f"cannot be written at IR {IR_VERSION}")
    for node in graph.node:
        del node.metadata_props[:]
    del graph.metadata_props[:]
    model.ir_version = IR_VERSION


def restamp(path: Path) -> ModelCard:
    """Re-write an exported model at :data:`IR_VERSION` with its card's STAC-MLM block and the
    Deepness keys recomputed, weights untouched; writes its STAC Item too."""
    model = onnx.load(str(path))
    as_ir(model)
    card = with_stac_mlm(read_card(path))
    onnx.checker.check_model(model)
    embed_card(model, card)
    onnx.save(model, str(path))
    write_stac_item(card, path)
    return card


def build_card(run: dict, info: TaskInfo, name: str, title: str = "", description: str = "") -> ModelCard:
    """The card of a run: its inputs and statistics, output, provenance and test metrics.

    A run whose network takes more than the sensor tensors says so in ``run["card"]``, in the
    card's own JSON terms (schema 1.2): ``{"time": {"alignment": "calendar", "first_month": 11,
    "min_steps": 1}, "context": [{"kind": "mask", "tensor": "s2_mask", "modality": "S2"}, ...]}``;
    they are checked by the plugin's own parser, so a bad declaration fails here, not in QGIS."""
    cfg = run["config"]
    modalities = cfg["modalities"]
    specs = specs_from_dict({m: run["stats"][m] for m in modalities})
    label = " + ".join(modalities)
    method = cfg["method"]
    if info.task == "classification":
        output = OutputSpec(tensor="probabilities", name=info.name, classes=info.classes)
    else:
        output = OutputSpec(tensor="prediction", name=info.name, unit=info.unit, range=info.range)
    card = ModelCard(
        name=name,
        title=title or f"{info.title} from {label} ({METHOD_TITLES.get(method, method)})",
        description=description
        or (
            f"{info.title} per pixel from {run['steps']} consecutive monthly composites of {label}. "
            f"TempCNN student trained with method '{method}' on dataset '{cfg['dataset']}' "
            f"(seed {cfg['seed']})."
        ),
        task=info.task,
        inputs=tuple(specs[m] for m in modalities),
        time=TimeSpec(steps=run["steps"], alignment="relative"),
        output=output,
        provenance=Provenance(
            dataset=cfg["dataset"],
            method=method,
            version=__version__,
            seed=cfg["seed"],
            commit=git_commit(),
            created=dt.date.today().isoformat(),
            metrics=dict(run["metrics"]["test"]),
        ),
    )
    declared = run.get("card", {})
    if declared:
        data = card.to_dict()
        data["time"].update(declared.get("time", {}))
        data["context"] = declared.get("context", [])
        card = card_from_dict(data)
    return with_stac_mlm(card)


def to_onnx(predictor: Predictor, card: ModelCard, path: Path) -> Path:
    """Write the graph (weights inside, dynamic batch) with ``card`` embedded."""
    check_student(predictor)
    predictor.eval()
    example = tuple(torch.zeros(2, card.time.steps, len(s.bands)) for s in card.inputs)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        predictor,
        example,
        input_names=[s.tensor for s in card.inputs],
        output_names=[card.output.tensor],
        dynamic_shapes=(tuple({0: batch} for _ in card.inputs),),
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    model = program.model_proto
    as_ir(model)
    onnx.checker.check_model(model)
    embed_card(model, card)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    write_stac_item(card, path)
    return path


def onnx_predict(path: Path, card: ModelCard, arrays: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {s.tensor: arrays[s.modality].astype(np.float32) for s in card.inputs}
    return session.run([card.output.tensor], feeds)[0]


def parity(path: Path, predictor: Predictor, card: ModelCard, prep: SplitData) -> float:
    """Max |ONNX - torch| on the real held-out samples; raises when beyond float32 tolerance."""
    from .run import predict

    arrays = prep.arrays["test"]
    expected = predict(predictor, arrays)
    got = onnx_predict(path, card, arrays)
    scale = 1.0 if card.task == "classification" else max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(got - expected).max())
    if not diff <= ATOL * scale:
        raise ExportError(
            f"ONNX and torch outputs differ by {diff:g} on the held-out samples of {path.name} "
            f"(tolerance {ATOL * scale:g}); the export is not faithful"
        )
    return diff


def export_run(
    module, run: dict, prep: SplitData, path: Path, name: str, title: str = "", description: str = ""
) -> tuple[ModelCard, float]:
    card = build_card(run, prep.data.info, name, title, description)
    predictor = module.predictor()
    to_onnx(predictor, card, Path(path))
    return card, parity(Path(path), predictor, card, prep)
