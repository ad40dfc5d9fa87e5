"""Reading a card: JSON -> validated :class:`.ModelCard`, every error naming the field at fault.

Schema versions are ``MAJOR.MINOR``. A card of a newer minor version is read (fields this code
does not know are ignored); a card of another major version is refused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..definitions import (
    CONTEXT_ENCODINGS,
    MODALITIES,
    ContextEncoding,
    ContextKind,
    Task,
    TensorLayout,
    TimeAlignment,
)
from ..units import UNITS
from .model import (
    ALIGNMENTS,
    SCALINGS,
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    Band,
    ClassInfo,
    ContextSpec,
    InputSpec,
    ModelCard,
    ModelCardError,
    OutputSpec,
    Provenance,
    Region,
    TimeSpec,
)

#: The first minor version of schema 1 that knows each tensor layout.
_LAYOUT_SINCE = {TensorLayout.NTC: 0, TensorLayout.NTCHW: 1}
#: The first minor version of schema 1 with context inputs, ``time.min_steps`` and calendar cards
#: without a fixed first month.
_CONTEXT_SINCE = 2
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


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
    task = root.text("task", choices=tuple(Task))

    inputs = []
    for path, raw in root.items("inputs"):
        inputs.append(_input_from(_Obj(raw, path, strict)))
    _unique([i.modality for i in inputs], "inputs", "modality")
    _unique([i.tensor for i in inputs], "inputs", "tensor")

    time = _time_from(root.child("time"), minor)

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
    context = _context_from(root, inputs, time.steps, minor)
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
        context=context,
        footprint=_footprint_from(root, minor),
        season=_season_from(root, minor),
    )
    root.done()
    return card


def _footprint_from(root: _Obj, minor: int) -> tuple[Region, ...]:
    """The optional training footprint (schema 1.2): regions with a (lon, lat) polygon each."""
    if "footprint" not in root.data:
        return ()
    if minor < _CONTEXT_SINCE:
        raise ModelCardError("footprint", f"needs schema_version {SCHEMA_MAJOR}.{_CONTEXT_SINCE} or later")
    out = []
    for path, raw in root.items("footprint"):
        o = _Obj(raw, path, root.strict)
        vertices = []
        for vpath, v in o.items("polygon", min_len=1):
            numbers = isinstance(v, list) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
            if not numbers or len(v) != 2:
                raise ModelCardError(vpath, "must be a [lon, lat] pair of numbers")
            if not (-180 <= v[0] <= 180 and -90 <= v[1] <= 90):
                raise ModelCardError(vpath, f"must be degrees of lon -180..180 and lat -90..90, not {v}")
            vertices.append((float(v[0]), float(v[1])))
        out.append(Region(o.text("name"), tuple(vertices), o.integer("samples", lo=1)))
        o.done()
    return tuple(out)


def _season_from(root: _Obj, minor: int) -> tuple[int, ...]:
    """The optional season (schema 1.2): the months (1-12) of the training samples."""
    if "season" not in root.data:
        return ()
    if minor < _CONTEXT_SINCE:
        raise ModelCardError("season", f"needs schema_version {SCHEMA_MAJOR}.{_CONTEXT_SINCE} or later")
    months = []
    for path, v in root.items("season"):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 12:
            raise ModelCardError(path, f"must be a month number 1-12, not {v!r}")
        months.append(v)
    _unique(months, "season", "month")
    return tuple(months)


def _time_from(t: _Obj, minor: int) -> TimeSpec:
    """The time axis; ``min_steps`` and a calendar axis without ``first_month`` need schema 1.2."""
    steps = t.integer("steps", lo=1, hi=1000)
    newer = minor >= _CONTEXT_SINCE
    if "min_steps" in t.data and not newer:
        raise ModelCardError(t.at("min_steps"),
                             f"needs schema_version {SCHEMA_MAJOR}.{_CONTEXT_SINCE} or later")
    time = TimeSpec(
        steps=steps,
        step=t.text("step", "month", choices=("month",)),
        alignment=t.text("alignment", TimeAlignment.RELATIVE, choices=ALIGNMENTS),
        first_month=t.integer("first_month", None, lo=1, hi=12, allow_none=True),
        min_steps=t.integer("min_steps", None, lo=1, hi=steps, allow_none=True),
    )
    t.done()
    if time.alignment == TimeAlignment.CALENDAR and time.first_month is None and not newer:
        raise ModelCardError("time.first_month", "is required when time.alignment is 'calendar' "
                                                 f"(before schema_version {SCHEMA_MAJOR}.{_CONTEXT_SINCE})")
    return time


def _context_from(root: _Obj, inputs: list[InputSpec], steps: int, minor: int) -> tuple[ContextSpec, ...]:
    """The optional context inputs: per-pixel cards of schema 1.2 or later; a mask names one of
    the card's modalities (one mask each), month and latlon appear once; tensor names are unique
    among all inputs; a declared ``shape`` must be the one the encoding gives."""
    if "context" not in root.data:
        return ()
    if minor < _CONTEXT_SINCE:
        raise ModelCardError("context", f"needs schema_version {SCHEMA_MAJOR}.{_CONTEXT_SINCE} or later")
    if inputs[0].layout != TensorLayout.NTC:
        raise ModelCardError("context", f"is for per-pixel models (layout NTC); schema "
                                        f"{SCHEMA_MAJOR}.{_CONTEXT_SINCE} has no context inputs for spatial "
                                        f"models (layout {inputs[0].layout})")
    modalities = [i.modality for i in inputs]
    out: list[ContextSpec] = []
    for path, raw in root.items("context", min_len=0):
        c = _Obj(raw, path, root.strict)
        kind = ContextKind(c.text("kind", choices=tuple(ContextKind)))
        choices = CONTEXT_ENCODINGS[kind]
        spec = ContextSpec(
            kind=kind,
            tensor=c.text("tensor"),
            encoding=ContextEncoding(c.text("encoding", choices[0], choices=tuple(choices))),
            modality=c.text("modality", choices=tuple(modalities)) if kind == ContextKind.MASK else None,
        )
        if kind != ContextKind.MASK and "modality" in c.data:
            raise ModelCardError(c.at("modality"), f"is for masks only; a {kind} input serves every modality")
        shape = c.get("shape", list, None)
        if shape is not None and [-1 if d == "batch" else d for d in shape] != \
                [-1 if d == "batch" else d for d in spec.shape(steps)]:
            raise ModelCardError(c.at("shape"), f"must be {spec.shape(steps)} for a {kind} input encoded "
                                                f"{spec.encoding} with {steps} time steps, not {shape}")
        c.done()
        out.append(spec)
    _unique([c.modality if c.kind == ContextKind.MASK else c.kind for c in out], "context", "kind")
    names = [i.tensor for i in inputs]
    for n, c in enumerate(out):
        if c.tensor in names:
            raise ModelCardError(f"context[{n}].tensor",
                                 f"duplicates {c.tensor!r}, already an input's tensor")
        names.append(c.tensor)
    return tuple(out)


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
    if halo > 0 and inputs[0].layout != TensorLayout.NTCHW:
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
        layout=o.text("layout", TensorLayout.NTC, choices=tuple(TensorLayout)),
    )
    s.done()
    o.done()
    return spec


def _output_from(o: _Obj, task: str) -> OutputSpec:
    tensor, name = o.text("tensor"), o.text("name")
    if task == Task.CLASSIFICATION:
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
    """Parse and validate a card from JSON text; bad JSON is a :class:`ModelCardError` too."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ModelCardError("<card>", f"is not valid JSON ({exc})") from None
    except RecursionError:  # json nests by recursion: a hostile or broken card must not crash
        raise ModelCardError("<card>", "is nested too deeply to be a model card") from None
    if _depth(data) > MAX_DEPTH:  # writing or showing it again would recurse as deep
        raise ModelCardError("<card>", f"is nested more than {MAX_DEPTH} levels deep; a model card "
                             "is not nested that deep")
    return card_from_dict(data)


#: Deepest nesting of lists and objects a card may have (the bundled cards nest 6 deep).
MAX_DEPTH = 64


def _depth(data: Any) -> int:
    """How deep lists and objects nest in parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest
