"""The model card: the one contract between ``training/`` and the plugin.

A card is JSON stored in the ONNX file's ``metadata_props`` under :data:`CARD_KEY`. It says which
inputs the graph takes (modality, band names in order, physical units, time steps, the scaling
applied before the network, tensor names and layout), what it returns (classes with names and
colours, or a regression unit and range) and where it came from. Everything the plugin does with
a model is driven by its card, so what a model saw in training is what it sees in QGIS.

Inputs are per pixel (layout NTC, ``halo`` 0) or image patches (layout NTCHW, schema 1.1): a
spatial model needs ``halo`` pixels of context around every pixel it predicts.

Schema versions are ``MAJOR.MINOR``. A card of a newer minor version is read (fields this code
does not know are ignored); a card of another major version is refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .units import UNITS

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
CARD_KEY = "eo_missing_model_card"

TASKS = ("classification", "regression")
MODALITIES = ("S1", "S2", "weather", "DEM")
#: Tensor layouts: per pixel (batch, time, bands), or spatial (batch, time, bands, height, width).
LAYOUTS = ("NTC", "NTCHW")
#: The first minor version of schema 1 that knows each layout.
_LAYOUT_SINCE = {"NTC": 0, "NTCHW": 1}
ALIGNMENTS = ("relative", "calendar")
SCALINGS = ("standardize",)
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


class ModelCardError(ValueError):
    """A card that is missing, malformed or inconsistent; ``field`` names the culprit."""

    def __init__(self, field_path: str, problem: str):
        super().__init__(f"model card field '{field_path}': {problem}")
        self.field = field_path
        self.problem = problem


@dataclass(frozen=True)
class Band:
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
    layout: str = "NTC"

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def standardize(self, physical: np.ndarray) -> np.ndarray:
        """Scale physical values the way training did: (..., bands) for NTC, (..., bands, H, W)
        for NTCHW."""
        trailing = (1, 1) if self.layout == "NTCHW" else ()
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, *trailing)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, *trailing)
        out = physical - mean
        out /= std  # in place: the same numbers as (physical - mean) / std, one array less
        return out


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
    dataset: str
    method: str
    version: str
    seed: int | None = None
    commit: str = ""
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
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
        return [i.modality for i in self.inputs]

    @property
    def spatial(self) -> bool:
        """Whether the model takes image patches (layout NTCHW) rather than single pixels."""
        return self.inputs[0].layout == "NTCHW"

    def input_for(self, modality: str) -> InputSpec:
        for spec in self.inputs:
            if spec.modality == modality:
                return spec
        raise KeyError(modality)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
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
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    def deepness_metadata(self) -> dict[str, str]:
        """The keys the Deepness plugin reads, so the file is also legible there. Deepness reads
        every value with ``json.loads``, so the model type is a JSON string (``"Segmentor"``)."""
        out = {
            "model_type": json.dumps("Segmentor" if self.task == "classification" else "Regressor"),
            "tile_size": str(self.tile_size),
            "standardization_mean": json.dumps(
                [m for _ in range(self.time.steps) for i in self.inputs for m in i.mean]
            ),
            "standardization_std": json.dumps(
                [s for _ in range(self.time.steps) for i in self.inputs for s in i.std]
            ),
        }
        if self.task == "classification":
            out["class_names"] = json.dumps(
                {str(k): c.name for k, c in enumerate(self.output.classes)}
            )
        return out


def _output_to_dict(o: OutputSpec, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tensor": o.tensor, "name": o.name}
    if task == "classification":
        out["activation"] = o.activation
        out["classes"] = [{"id": c.id, "name": c.name, "color": c.color} for c in o.classes]
    else:
        out.update(unit=o.unit, range=list(o.range or ()), scale=o.scale, offset=o.offset)
    return out


# -- parsing and validation --------------------------------------------------------------------
class _Obj:
    """Reads one JSON object, naming the full path of any field that is wrong."""

    def __init__(self, data: Any, path: str, strict: bool):
        if not isinstance(data, dict):
            raise ModelCardError(path or "<card>", f"must be an object, not {type(data).__name__}")
        self.data, self.path, self.strict, self.seen = data, path, strict, set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, allow_none=False):
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise ModelCardError(self.at(key), "is required but missing")
            return default
        value = self.data[key]
        if value is None and allow_none:
            return None
        # bool is an int subclass in Python; never accept it for numbers.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise ModelCardError(self.at(key), f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise ModelCardError(self.at(key), f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def text(self, key: str, default: Any = ..., *, choices: tuple[str, ...] = (), nonempty=True):
        value = self.get(key, str, default)
        if nonempty and not value.strip():
            raise ModelCardError(self.at(key), "must not be empty")
        if choices and value not in choices:
            raise ModelCardError(self.at(key), f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def number(self, key: str, default: Any = ...) -> float:
        value = float(self.get(key, (int, float), default))
        if not math.isfinite(value):
            raise ModelCardError(self.at(key), "must be a finite number")
        return value

    def integer(self, key: str, default: Any = ..., *, lo: int | None = None, hi: int | None = None,
                allow_none=False) -> int | None:
        value = self.get(key, int, default, allow_none=allow_none)
        if value is None:
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ModelCardError(self.at(key), f"must be between {lo} and {hi}, not {value}")
        return value

    def items(self, key: str, *, min_len: int = 1) -> list[tuple[str, Any]]:
        value = self.get(key, list)
        if len(value) < min_len:
            raise ModelCardError(self.at(key), f"must hold at least {min_len} item(s)")
        return [(f"{self.at(key)}[{n}]", v) for n, v in enumerate(value)]

    def numbers(self, key: str, length: int) -> tuple[float, ...]:
        out = []
        for path, v in self.items(key, min_len=0):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ModelCardError(path, "must be a finite number")
            out.append(float(v))
        if len(out) != length:
            raise ModelCardError(self.at(key), f"must hold {length} values (one per band), not {len(out)}")
        return tuple(out)

    def child(self, key: str, default: Any = ...) -> _Obj:
        return _Obj(self.get(key, dict, default), self.at(key), self.strict)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown and self.strict:
            raise ModelCardError(self.at(unknown[0]), "is not a field of this schema version")


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list",
             dict: "an object", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def _schema_version(data: dict) -> tuple[int, int]:
    raw = data.get("schema_version")
    if not isinstance(raw, str) or not re.fullmatch(r"\d+\.\d+", raw):
        raise ModelCardError("schema_version", f"must be a 'MAJOR.MINOR' string, not {raw!r}")
    major, minor = (int(p) for p in raw.split("."))
    if major != SCHEMA_MAJOR:
        raise ModelCardError(
            "schema_version",
            f"major version {major} is not supported (this plugin reads {SCHEMA_MAJOR}.x); "
            "update the plugin or re-export the model",
        )
    return major, minor


def card_from_dict(data: Any) -> ModelCard:
    """Validate ``data`` and build a card; raises :class:`ModelCardError` naming the field."""
    if not isinstance(data, dict):
        raise ModelCardError("<card>", f"must be a JSON object, not {type(data).__name__}")
    _, minor = _schema_version(data)
    strict = minor <= SCHEMA_MINOR
    root = _Obj(data, "", strict)
    root.seen.add("schema_version")
    task = root.text("task", choices=TASKS)

    inputs = []
    for path, raw in root.items("inputs"):
        inputs.append(_input_from(_Obj(raw, path, strict)))
    _unique([i.modality for i in inputs], "inputs", "modality")
    _unique([i.tensor for i in inputs], "inputs", "tensor")

    t = root.child("time")
    time = TimeSpec(
        steps=t.integer("steps", lo=1, hi=1000),
        step=t.text("step", "month", choices=("month",)),
        alignment=t.text("alignment", "relative", choices=ALIGNMENTS),
        first_month=t.integer("first_month", None, lo=1, hi=12, allow_none=True),
    )
    t.done()
    if time.alignment == "calendar" and time.first_month is None:
        raise ModelCardError("time.first_month", "is required when time.alignment is 'calendar'")

    output = _output_from(root.child("output"), task)
    p = root.child("provenance")
    metrics = {}
    m = p.child("metrics", {})
    for key in list(m.data):
        metrics[key] = m.number(key)
    provenance = Provenance(
        dataset=p.text("dataset"),
        method=p.text("method"),
        version=p.text("version"),
        seed=p.integer("seed", None, allow_none=True),
        commit=p.text("commit", "", nonempty=False),
        created=p.text("created", "", nonempty=False),
        metrics=metrics,
    )
    p.done()
    name = root.text("name")
    if not _IDENT.match(name):
        raise ModelCardError("name", "must be an identifier (letters, digits, _ . : -)")
    halo = root.integer("halo", 0, lo=0, hi=4096)
    _check_layouts(inputs, halo, minor)
    card = ModelCard(
        name=name,
        title=root.text("title"),
        description=root.text("description", "", nonempty=False),
        task=task,
        inputs=tuple(inputs),
        time=time,
        output=output,
        provenance=provenance,
        halo=halo,
        tile_size=root.integer("tile_size", 256, lo=1, hi=65536),
        stac_mlm=root.get("stac_mlm", dict, {}),
        schema_version=data["schema_version"],
    )
    root.done()
    return card


def _check_layouts(inputs: list[InputSpec], halo: int, minor: int) -> None:
    """One layout for all inputs, known to the card's schema version; a halo only for NTCHW."""
    for n, spec in enumerate(inputs):
        path = f"inputs[{n}].layout"
        if _LAYOUT_SINCE[spec.layout] > minor:
            raise ModelCardError(path, f"{spec.layout} needs schema_version "
                                       f"{SCHEMA_MAJOR}.{_LAYOUT_SINCE[spec.layout]} or later")
        if spec.layout != inputs[0].layout:
            raise ModelCardError(path, f"is {spec.layout} but inputs[0] is {inputs[0].layout}; "
                                       "all inputs of a model must share one layout")
    if halo > 0 and inputs[0].layout != "NTCHW":
        raise ModelCardError("halo", f"is {halo} px but the inputs have layout {inputs[0].layout} "
                                     "(one pixel at a time); a model that looks at neighbouring pixels "
                                     "needs layout NTCHW, a per-pixel model has halo 0")


def _input_from(o: _Obj) -> InputSpec:
    bands = []
    for path, raw in o.items("bands"):
        b = _Obj(raw, path, o.strict)
        bands.append(Band(name=b.text("name"), unit=b.text("unit", choices=tuple(UNITS))))
        b.done()
    _unique([b.name for b in bands], o.at("bands"), "name")
    s = o.child("scaling")
    mean = s.numbers("mean", len(bands))
    std = s.numbers("std", len(bands))
    for n, v in enumerate(std):
        if v <= 0:
            raise ModelCardError(f"{s.at('std')}[{n}]", "must be positive")
    spec = InputSpec(
        tensor=o.text("tensor"),
        modality=o.text("modality", choices=MODALITIES),
        sensor=o.text("sensor"),
        bands=tuple(bands),
        mean=mean,
        std=std,
        scaling=s.text("method", "standardize", choices=SCALINGS),
        layout=o.text("layout", "NTC", choices=LAYOUTS),
    )
    s.done()
    o.done()
    return spec


def _output_from(o: _Obj, task: str) -> OutputSpec:
    tensor, name = o.text("tensor"), o.text("name")
    if task == "classification":
        classes = []
        for path, raw in o.items("classes", min_len=2):
            c = _Obj(raw, path, o.strict)
            color = c.text("color")
            if not _COLOR.match(color):
                raise ModelCardError(c.at("color"), f"must be '#RRGGBB', not {color!r}")
            classes.append(ClassInfo(id=c.integer("id", lo=1, hi=255), name=c.text("name"), color=color))
            c.done()
        _unique([c.id for c in classes], o.at("classes"), "id")
        _unique([c.name for c in classes], o.at("classes"), "name")
        spec = OutputSpec(tensor=tensor, name=name, classes=tuple(classes),
                          activation=o.text("activation", "softmax", choices=("softmax", "none")))
    else:
        lo_hi = o.numbers("range", 2)
        if not lo_hi[0] < lo_hi[1]:
            raise ModelCardError(o.at("range"), "must be [low, high] with low < high")
        scale = o.number("scale", 1.0)
        if scale == 0:
            raise ModelCardError(o.at("scale"), "must not be zero")
        spec = OutputSpec(tensor=tensor, name=name, unit=o.text("unit"), range=lo_hi,
                          scale=scale, offset=o.number("offset", 0.0))
    o.done()
    return spec


def _unique(values: list, path: str, what: str) -> None:
    seen = set()
    for n, v in enumerate(values):
        if v in seen:
            raise ModelCardError(f"{path}[{n}].{what}", f"duplicates {v!r}")
        seen.add(v)


def card_from_json(text: str | bytes) -> ModelCard:
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ModelCardError("<card>", f"is not valid JSON ({exc})") from None
    return card_from_dict(data)


# -- ONNX files ---------------------------------------------------------------------------------
def read_metadata_props(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read straight from its protobuf encoding.

    Needs neither ``onnx`` nor ``onnxruntime``, and does not build a session, so a card can be
    shown even where the runtime is missing.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ModelCardError("<file>", f"cannot read {path}: {exc.strerror or exc}") from None
    props: dict[str, str] = {}
    try:
        for number, value in _fields(blob):
            if number == 14 and isinstance(value, memoryview):  # ModelProto.metadata_props
                entry = dict(_fields(value))
                key, val = entry.get(1, b""), entry.get(2, b"")
                props[bytes(key).decode("utf-8")] = bytes(val).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelCardError("<file>", f"{path} is not an ONNX model ({exc})") from None
    return props


def _fields(buf: bytes | memoryview):
    """Top-level (field number, value) pairs of a protobuf message."""
    view, pos, end = memoryview(buf), 0, len(buf)
    if end == 0:
        raise ValueError("empty file")
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(view, pos)
            value, pos = view[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, value


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise ValueError("truncated varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_card(path: str | Path) -> ModelCard:
    """The validated card of an ONNX file."""
    props = read_metadata_props(path)
    if CARD_KEY not in props:
        raise ModelCardError(
            f"metadata_props.{CARD_KEY}", f"is missing: {Path(path).name} carries no model card"
        )
    return card_from_json(props[CARD_KEY])


def embed_card(model, card: ModelCard) -> None:
    """Write ``card`` (and the Deepness keys) into an ``onnx.ModelProto``'s metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(card.deepness_metadata())
    props[CARD_KEY] = card.to_json()
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
