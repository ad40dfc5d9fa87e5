"""Export a trained student to ONNX with its model card, and check parity with torch.

The graph takes one float32 tensor per modality, (batch, time, bands) = the card's NTC layout,
already standardised by :func:`eo_missing_qgis.core.preprocessing.standardize`, then the run's
context inputs (card schema 1.2: masks, month, location, in the card's order); it returns
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
    SCHEMA_VERSION,
    ContextSpec,
    ModelCard,
    OutputSpec,
    Provenance,
    Region,
    TimeSpec,
    card_from_dict,
    embed_card,
    read_card,
)
from eo_missing_qgis.core.definitions import ContextKind, TimeAlignment

from . import __version__
from .datasets import EODataset, TaskInfo, load_dataset
from .models import Predictor, context_specs
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
#: How each dataset's time steps are anchored: crop type and algae on calendar months, LFMC on
#: the months before the measurement (others: relative, the pre-1.2 meaning).
ALIGNMENTS = {
    "crop_type": TimeAlignment.CALENDAR, "algae": TimeAlignment.CALENDAR, "lfmc": TimeAlignment.RELATIVE,
    "crop_type_europe": TimeAlignment.CALENDAR, "crop_type_east_africa": TimeAlignment.CALENDAR,
    "cropland": TimeAlignment.CALENDAR,
}
#: What the title says a model also reads, per context kind (the mask is implied by the sensors).
CONTEXT_TITLES = {ContextKind.MONTH: "month", ContextKind.LATLON: "location"}
#: The STAC-MLM architecture of each ``net.arch``.
ARCH_NAMES = {"tempcnn": "TempCNN", "mlp": "time-as-channels MLP"}


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
        "mlm:architecture": card.stac_mlm.get("mlm:architecture", "TempCNN"),
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

    Its geometry is the card's training footprint (a MultiPolygon of the regions' hulls), or none
    for a card without one."""
    created = card.provenance.created or dt.date.today().isoformat()
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA],
        "id": card.name,
        **_footprint_geometry(card),
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


def _footprint_geometry(card: ModelCard) -> dict:
    """GeoJSON geometry and bbox of the footprint; a region of fewer than 3 vertices (one or two
    sites) becomes a small box around them so the polygon stays valid."""
    if not card.footprint:
        return {"geometry": None}
    rings = []
    for r in card.footprint:
        ring = [list(v) for v in r.polygon]
        if len(ring) < 3:
            lons, lats = [v[0] for v in ring], [v[1] for v in ring]
            lo_x, hi_x, lo_y, hi_y = min(lons) - 0.01, max(lons) + 0.01, min(lats) - 0.01, max(lats) + 0.01
            ring = [[lo_x, lo_y], [hi_x, lo_y], [hi_x, hi_y], [lo_x, hi_y]]
        rings.append([[*ring, ring[0]]])
    xs = [v[0] for poly in rings for v in poly[0]]
    ys = [v[1] for poly in rings for v in poly[0]]
    return {"bbox": [min(xs), min(ys), max(xs), max(ys)],
            "geometry": {"type": "MultiPolygon", "coordinates": rings}}


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


#: Side of the grid cells (degrees) that group training samples into footprint regions: cells
#: touching each other make one region, so a continent's samples stay apart from another's.
FOOTPRINT_CELL_DEG = 5.0
#: How the training samples' regions are named to the user, per dataset and its ``meta["region"]``.
REGION_NAMES = {"lfmc": "western-US shrublands", "east_africa": "East-African croplands",
                "flanders": "Flanders (Belgium) croplands", "europe": "Belgian croplands"}


def footprint(latlon: np.ndarray, labels: np.ndarray) -> tuple[Region, ...]:
    """Regions of samples at ``latlon`` (N, 2 degrees): occupied grid cells that touch are one
    region, outlined by the convex hull of its samples and named by its most frequent label."""
    cells = np.floor(np.asarray(latlon, np.float64) / FOOTPRINT_CELL_DEG).astype(np.int64)
    keys = sorted({tuple(c) for c in cells})
    region_of = {k: n for n, k in enumerate(keys)}
    for k in keys:  # union of touching cells (8-neighbours), relabelled to the smallest index
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                other = (k[0] + dr, k[1] + dc)
                if other in region_of:
                    a, b = region_of[k], region_of[other]
                    low = min(a, b)
                    for key, r in region_of.items():
                        if r in (a, b):
                            region_of[key] = low
    ids = np.array([region_of[tuple(c)] for c in cells])
    out = []
    for r in sorted(set(ids)):
        members = ids == r
        names, counts = np.unique(labels[members], return_counts=True)
        hull = _hull([(round(float(lon), 4), round(float(lat), 4)) for lat, lon in latlon[members]])
        out.append(Region(REGION_NAMES.get(str(names[counts.argmax()]), str(names[counts.argmax()])),
                          tuple(hull), int(members.sum())))
    return tuple(sorted(out, key=lambda reg: -reg.samples))


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull (Andrew's monotone chain), counter-clockwise; fewer than 3 distinct points as they are."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    return half(pts)[:-1] + half(pts[::-1])[:-1]


def with_footprint(card: ModelCard, data: EODataset, train: np.ndarray) -> ModelCard:
    """``card`` (now schema 1.2) with the footprint and season of the ``train`` samples of ``data``;
    unchanged for a dataset without sample locations."""
    if data.latlon is None:
        return card
    labels = np.asarray(data.meta.get("region", np.full(len(data.target), data.name)))[train]
    season = tuple(sorted({int(m) for m in data.months[train, -1]})) if data.months is not None else ()
    return ModelCard(**{**card.__dict__, "schema_version": SCHEMA_VERSION,
                        "footprint": footprint(data.latlon[train], labels), "season": season})


def restamp(path: Path, data_dir: Path | None = None) -> ModelCard:
    """Re-write an exported model at :data:`IR_VERSION` with its card's STAC-MLM block and the
    Deepness keys recomputed, weights untouched; writes its STAC Item too. With ``data_dir``, the
    card also gets the footprint and season of its training split (same dataset, seed and split)."""
    model = onnx.load(str(path))
    as_ir(model)
    card = read_card(path)
    if data_dir is not None:
        data = load_dataset(card.provenance.dataset, data_dir)
        card = with_footprint(card, data, data.splits(card.provenance.seed or 0)["train"])
    card = with_stac_mlm(card)
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
    arch = cfg.get("net", {}).get("arch", "tempcnn")
    extra = [CONTEXT_TITLES[k] for k in CONTEXT_TITLES if k in cfg.get("context", [])]
    least = run.get("card", {}).get("time", {}).get("min_steps", run["steps"])
    span = f"{run['steps']} consecutive" if least >= run["steps"] else f"{least} to {run['steps']}"
    if info.task == "classification":
        output = OutputSpec(tensor="probabilities", name=info.name, classes=info.classes)
    else:
        output = OutputSpec(tensor="prediction", name=info.name, unit=info.unit, range=info.range)
    card = ModelCard(
        name=name,
        title=(title or f"{info.title} from {label} ({METHOD_TITLES.get(method, method)})")
        + (f" with {' and '.join(extra)}" if extra else ""),
        description=description
        or (
            f"{info.title} per pixel from {span} monthly composites of {label}"
            f"{' with ' + ' and '.join(extra) if extra else ''}. "
            f"{ARCH_NAMES[arch]} student trained with method '{method}' on dataset '{cfg['dataset']}' "
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
        stac_mlm={"mlm:architecture": ARCH_NAMES[arch]},
    )
    declared = run.get("card", {})
    if declared:
        data = card.to_dict()
        data["time"].update(declared.get("time", {}))
        data["context"] = declared.get("context", [])
        card = card_from_dict(data)
    return with_stac_mlm(card)


def declaration(cfg: dict, data: EODataset, train: np.ndarray) -> dict:
    """The time axis and context inputs of a run, for :func:`build_card`'s ``run["card"]``:
    alignment per dataset (:data:`ALIGNMENTS`), a calendar card's first month when every
    training sample starts in the same month (else none: the months come from the layers' dates),
    ``min_steps`` 1 for a student trained with time-step dropout (else every step), and the
    context inputs the networks read."""
    alignment = ALIGNMENTS.get(cfg["dataset"], TimeAlignment.RELATIVE)
    time = {"alignment": str(alignment), "min_steps": 1 if cfg.get("time_dropout", 0.0) > 0 else data.steps}
    if alignment == TimeAlignment.CALENDAR:
        first = np.unique(data.months[train, 0]) if data.months is not None else []
        time["first_month"] = int(first[0]) if len(first) == 1 else None
    specs = context_specs(cfg.get("context", []), cfg["modalities"])
    return {"time": time, "context": [_context_dict(c) for c in specs]}


def _context_dict(spec: ContextSpec) -> dict:
    return {"kind": str(spec.kind), "tensor": spec.tensor, "encoding": str(spec.encoding),
            **({"modality": spec.modality} if spec.modality else {})}


def _example(card: ModelCard) -> tuple[torch.Tensor, ...]:
    """Zeros in the shape of every graph input (batch 2), in the card's order."""
    shapes = [[2, card.time.steps, len(s.bands)] for s in card.inputs]
    shapes += [[2 if d == "batch" else d for d in c.shape(card.time.steps)] for c in card.context]
    return tuple(torch.zeros(*shape) for shape in shapes)


def to_onnx(predictor: Predictor, card: ModelCard, path: Path) -> Path:
    """Write the graph (weights inside, dynamic batch) with ``card`` embedded."""
    check_student(predictor)
    predictor.eval()
    example = _example(card)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        predictor,
        example,
        input_names=[s.tensor for s in card.inputs] + [c.tensor for c in card.context],
        output_names=[card.output.tensor],
        dynamic_shapes=(tuple({0: batch} for _ in example),),
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


def onnx_feeds(card: ModelCard, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's inputs from network arrays: each sensor tensor, then the context tensors."""
    feeds = {s.tensor: arrays[s.modality].astype(np.float32) for s in card.inputs}
    return feeds | {c.tensor: arrays[c.tensor].astype(np.float32) for c in card.context}


def onnx_predict(path: Path, card: ModelCard, arrays: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([card.output.tensor], onnx_feeds(card, arrays))[0]


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
    train = prep.splits["train"]
    run = {"card": declaration(run["config"], prep.data, train), **run}
    card = with_footprint(build_card(run, prep.data.info, name, title, description), prep.data, train)
    predictor = module.predictor()
    to_onnx(predictor, card, Path(path))
    return card, parity(Path(path), predictor, card, prep)
