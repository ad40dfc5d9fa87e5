"""The model card's data model: the one contract between ``training/`` and the plugin.

A card is JSON stored in the ONNX file's ``metadata_props`` under :data:`CARD_KEY`. It says which
inputs the graph takes (modality, band names in order, physical units, time steps, the scaling
applied before the network, tensor names and layout), what it returns (classes with names and
colours, or a regression unit and range) and where it came from. Everything the plugin does with
a model is driven by its card, so what a model saw in training is what it sees in QGIS.

Inputs are per pixel (layout NTC, ``halo`` 0) or image patches (layout NTCHW, schema 1.1): a
spatial model needs ``halo`` pixels of context around every pixel it predicts.

Parsing and validation live in :mod:`.parse`, the ONNX metadata in :mod:`.onnx_io`, the
human-readable views in :mod:`.report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..definitions import Task, TensorLayout

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
CARD_KEY = "eo_missing_model_card"

ALIGNMENTS = ("relative", "calendar")
SCALINGS = ("standardize",)


class ModelCardError(ValueError):
    """A card that is missing, malformed or inconsistent; ``field`` names the culprit."""

    def __init__(self, field_path: str, problem: str):
        super().__init__(f"model card field '{field_path}': {problem}")
        self.field = field_path
        self.problem = problem


@dataclass(frozen=True)
class Band:
    """A band of an input: its name and physical unit."""

    name: str
    unit: str


@dataclass(frozen=True)
class InputSpec:
    """One modality group: a tensor of shape (batch, time, len(bands)) in layout ``NTC``, or
    (batch, time, len(bands), height, width) in layout ``NTCHW``."""

    tensor: str
    modality: str
    sensor: str
    bands: tuple[Band, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scaling: str = "standardize"
    layout: TensorLayout = TensorLayout.NTC

    @property
    def band_names(self) -> list[str]:
        """The band names, in the tensor's order."""
        return [b.name for b in self.bands]


@dataclass(frozen=True)
class TimeSpec:
    """``steps`` consecutive months, oldest first. ``relative``: any start month;
    ``calendar``: the first step must be ``first_month`` (1-12)."""

    steps: int
    step: str = "month"
    alignment: str = "relative"
    first_month: int | None = None


@dataclass(frozen=True)
class ClassInfo:
    """One class of a classification: raster value, name, colour '#RRGGBB'."""

    id: int
    name: str
    color: str


@dataclass(frozen=True)
class OutputSpec:
    """Classification: ``classes`` in the graph's output order, ids are raster values (0 is
    nodata); the tensor holds probabilities (``activation`` softmax) or logits (none), shaped
    (batch, classes) for NTC inputs and (batch, classes, H, W) for NTCHW. Regression: physical
    value = raw * ``scale`` + ``offset`` in ``unit``; shaped (batch, 1) or (batch, 1, H, W)."""

    tensor: str
    name: str
    classes: tuple[ClassInfo, ...] = ()
    activation: str = "softmax"
    unit: str = ""
    range: tuple[float, float] | None = None
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Provenance:
    """Where a model came from: data, method, version, seed, commit, test metrics."""

    dataset: str
    method: str
    version: str
    seed: int | None = None
    commit: str = ""
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
    """Everything the plugin needs to know about a model, read from its ONNX file."""

    name: str
    title: str
    description: str
    task: str
    inputs: tuple[InputSpec, ...]
    time: TimeSpec
    output: OutputSpec
    provenance: Provenance
    halo: int = 0
    tile_size: int = 256
    stac_mlm: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    @property
    def modalities(self) -> list[str]:
        """The modalities of the inputs, in the card's order."""
        return [i.modality for i in self.inputs]

    @property
    def spatial(self) -> bool:
        """Whether the model takes image patches (layout NTCHW) rather than single pixels."""
        return self.inputs[0].layout == TensorLayout.NTCHW

    def input_for(self, modality: str) -> InputSpec:
        """The input of ``modality``; KeyError when the model does not take it."""
        for spec in self.inputs:
            if spec.modality == modality:
                return spec
        raise KeyError(modality)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The card as the JSON object :func:`.parse.card_from_dict` reads back."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "task": self.task,
            "inputs": [
                {
                    "tensor": i.tensor,
                    "modality": i.modality,
                    "sensor": i.sensor,
                    "layout": i.layout,
                    "bands": [{"name": b.name, "unit": b.unit} for b in i.bands],
                    "scaling": {"method": i.scaling, "mean": list(i.mean), "std": list(i.std)},
                }
                for i in self.inputs
            ],
            "time": {
                "steps": self.time.steps,
                "step": self.time.step,
                "alignment": self.time.alignment,
                "first_month": self.time.first_month,
            },
            "halo": self.halo,
            "tile_size": self.tile_size,
            "output": _output_to_dict(self.output, self.task),
            "provenance": {
                "dataset": self.provenance.dataset,
                "method": self.provenance.method,
                "version": self.provenance.version,
                "seed": self.provenance.seed,
                "commit": self.provenance.commit,
                "created": self.provenance.created,
                "metrics": dict(self.provenance.metrics),
            },
        }
        if self.stac_mlm:
            out["stac_mlm"] = self.stac_mlm
        return out

    def to_json(self) -> str:
        """The card as JSON text, as stored in the ONNX file."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)



def _output_to_dict(o: OutputSpec, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tensor": o.tensor, "name": o.name}
    if task == Task.CLASSIFICATION:
        out["activation"] = o.activation
        out["classes"] = [{"id": c.id, "name": c.name, "color": c.color} for c in o.classes]
    else:
        out.update(unit=o.unit, range=list(o.range or ()), scale=o.scale, offset=o.offset)
    return out
