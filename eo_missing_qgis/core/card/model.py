"""The model card's data model: the one contract between ``training/`` and the plugin.

A card is JSON stored in the ONNX file's ``metadata_props`` under :data:`CARD_KEY`. It says which
inputs the graph takes (modality, band names in order, physical units, time steps, the scaling
applied before the network, tensor names and layout), what it returns (classes with names and
colours, or a regression unit and range) and where it came from. Everything the plugin does with
a model is driven by its card, so what a model saw in training is what it sees in QGIS.

Inputs are per pixel (layout NTC, ``halo`` 0) or image patches (layout NTCHW, schema 1.1): a
spatial model needs ``halo`` pixels of context around every pixel it predicts. Schema 1.2 adds the
time axis's ``min_steps`` and optional context inputs (availability mask, month, latitude/
longitude; per-pixel cards only), which the plugin computes from the layers' values, dates and CRS.

Parsing and validation live in :mod:`.parse`, the ONNX metadata in :mod:`.onnx_io`, the
human-readable views in :mod:`.report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..definitions import CONTEXT_WIDTH, ContextEncoding, ContextKind, Task, TensorLayout, TimeAlignment

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
CARD_KEY = "eo_missing_model_card"

ALIGNMENTS = tuple(TimeAlignment)
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
    """``steps`` consecutive months, oldest first. ``relative``: the last step is the month before
    the target date, any start month; ``calendar``: calendar months, the first step being
    ``first_month`` (1-12) when the model fixes it (schema 1.2 allows none: the months then come
    from the layers' dates). ``min_steps`` (1.2): how many steps the layers must give at least;
    the others are missing data, filled and flagged in the mask. None = every step."""

    steps: int
    step: str = "month"
    alignment: str = TimeAlignment.RELATIVE
    first_month: int | None = None
    min_steps: int | None = None

    @property
    def required(self) -> int:
        """The number of steps the layers must give."""
        return self.steps if self.min_steps is None else self.min_steps


@dataclass(frozen=True)
class ContextSpec:
    """A context input (schema 1.2): ``kind`` of :class:`.ContextKind` written with ``encoding``
    into tensor ``tensor``; a mask belongs to one ``modality``. Fed as computed (no scaling):
    the graph scales them itself."""

    kind: ContextKind
    tensor: str
    encoding: ContextEncoding
    modality: str | None = None

    def shape(self, steps: int) -> list[int | str]:
        """The tensor's shape, ``batch`` being the pixels."""
        width = CONTEXT_WIDTH[self.encoding]
        if self.kind == ContextKind.LATLON:
            return ["batch", width]
        return ["batch", steps] if width == 1 else ["batch", steps, width]


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
class Region:
    """One region of the training footprint (schema 1.2): a short ``name`` said to the user ("western-US
    shrublands"), a simplified convex ``polygon`` of (lon, lat) vertices and the training ``samples``
    in it."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    samples: int


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
    context: tuple[ContextSpec, ...] = ()
    footprint: tuple[Region, ...] = ()  # where the training samples were; () when unknown
    season: tuple[int, ...] = ()  # months (1-12) of the training samples' target dates; () when unknown

    def context_of(self, kind: ContextKind) -> list[ContextSpec]:
        """The context inputs of ``kind``, in the card's order."""
        return [c for c in self.context if c.kind == kind]

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
        time: dict[str, Any] = {
            "steps": self.time.steps,
            "step": self.time.step,
            "alignment": self.time.alignment,
            "first_month": self.time.first_month,
        }
        # Fields of schema 1.2 only where the card is 1.2 or later, so an old card reads back.
        newer = int(self.schema_version.split(".")[1]) >= 2
        if newer and self.time.min_steps is not None:
            time["min_steps"] = self.time.min_steps
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
            "time": time,
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
        if newer and self.context:
            out["context"] = [
                {"kind": c.kind, "tensor": c.tensor, "encoding": c.encoding,
                 **({"modality": c.modality} if c.modality else {}), "shape": c.shape(self.time.steps)}
                for c in self.context
            ]
        if newer and self.footprint:
            out["footprint"] = [
                {"name": r.name, "polygon": [list(v) for v in r.polygon], "samples": r.samples}
                for r in self.footprint
            ]
        if newer and self.season:
            out["season"] = list(self.season)
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
