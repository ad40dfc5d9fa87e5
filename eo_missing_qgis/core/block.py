"""The model step on one block of in-memory arrays, with no file or GDAL access.

The local engine (windows of rasters), Dask (chunks of an xarray dataset) and openEO (a UDF's
data cube) all predict through these functions, so a pixel gets the same numbers whichever ran it.

Input convention: per modality of the card, an array (time, bands, height, width) with the card's
time steps and bands in the card's order; either physical values (NaN where missing) or stored
values with one :class:`.units.Encoding` per band. Output: (height, width) maps and
(classes, height, width) probabilities, with nodata (class 0, NaN) where a pixel is not valid.

A pixel is valid when every band of every modality has a value at one time step at least (and, for
a card with ``min_steps``, some modality has all its bands at that many steps); single
missing time steps are filled by :func:`.preprocessing.standardize` (the band mean), as training
fills them. Per-pixel models (NTC) only see the valid pixels; spatial models (NTCHW) see the whole
block, invalid pixels filled, as context for their neighbours.

Context inputs (card schema 1.2, per-pixel cards): the availability mask of a modality comes from
the values themselves (a step is available for a pixel when every band of the modality is finite
there); the month of each step and each pixel's latitude/longitude come from the caller in a
:class:`BlockContext` (the engine: the plan's dates and the grid's CRS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .card import ContextSpec, ModelCard
from .context import encode_latlon, encode_month
from .definitions import ContextKind
from .errors import InputError, ModelError
from .preprocessing import decode, mask_implausible, scale, standardize
from .session import ModelSession
from .units import UNITS, Encoding, implausible_fraction

#: Pixels per ONNX Runtime call for per-pixel models when the caller does not say.
DEFAULT_BATCH = 4096


@dataclass
class Prepared:
    """A block ready for the network: tensors by name, which pixels are valid (height, width),
    unit warnings (each band checked once per ``checked`` set) and, per time step, whether any
    valid pixel has every band of a modality there (so a run can say which months had data)."""

    tensors: dict[str, np.ndarray]
    valid: np.ndarray
    messages: list[str] = field(default_factory=list)
    steps_seen: np.ndarray | None = None


@dataclass(frozen=True)
class BlockContext:
    """What context inputs need besides the values: the calendar month (1-12) of each time step
    and the latitude/longitude (degrees, WGS 84) of each pixel centre, each (height, width)."""

    months: Sequence[int] | None = None
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None


@dataclass
class BlockOutputs:
    """Maps of one block: ``prediction`` (class ids uint8, 0 = nodata; or float32 regression
    values, NaN = nodata), ``confidence`` (max probability, classification only) and
    ``probabilities`` (classes, height, width) when asked for; ``warnings`` about the input's
    units, for the caller to show (a wrong encoding gives a plausible-looking wrong map)."""

    prediction: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def stacked(self) -> np.ndarray:
        """All maps as one float32 array (layers, height, width), in :func:`output_names` order:
        the form a Dask chunk or an openEO cube carries (class ids are exact in float32)."""
        maps = [self.prediction[None].astype(np.float32)]
        if self.confidence is not None:
            maps.append(self.confidence[None])
        if self.probabilities is not None:
            maps.append(self.probabilities)
        return np.concatenate(maps)

    @classmethod
    def from_stacked(cls, card: ModelCard, stacked: np.ndarray) -> BlockOutputs:
        """The inverse of :meth:`stacked`."""
        if card.task != "classification":
            return cls(stacked[0], np.isfinite(stacked[0]))
        cls_ids = stacked[0].astype(np.uint8)
        return cls(cls_ids, cls_ids > 0, stacked[1], stacked[2:] if len(stacked) > 2 else None)


def output_names(card: ModelCard, probabilities: bool = False) -> list[str]:
    """Names of the layers of :meth:`BlockOutputs.stacked`."""
    if card.task != "classification":
        return ["prediction"]
    probs = [f"probability {c.name}" for c in card.output.classes] if probabilities else []
    return ["prediction", "confidence", *probs]


def values_per_pixel(card: ModelCard) -> int:
    """Values the network returns per pixel: one per class, or one regression value."""
    return len(card.output.classes) if card.task == "classification" else 1


def physical_block(arrays: Mapping[str, np.ndarray], card: ModelCard,
                   encodings: Mapping[str, Sequence[Encoding]] | None = None) -> dict[str, np.ndarray]:
    """Check shapes and decode stored values to physical units per modality (time, bands, H, W);
    without ``encodings`` the arrays are taken as physical already (cast to float32)."""
    out = {}
    shape = None
    for spec in card.inputs:
        if spec.modality not in arrays:
            raise InputError(f"model {card.name} needs {spec.modality}, the block has "
                             f"{', '.join(arrays) or 'no modality'}")
        a = np.asarray(arrays[spec.modality])
        want = (card.time.steps, len(spec.bands))
        if a.ndim != 4 or a.shape[:2] != want:
            raise InputError(f"{spec.modality} must be (time, bands, height, width) with "
                             f"{want[0]} time steps and {want[1]} bands ({', '.join(spec.band_names)}), "
                             f"got shape {a.shape}")
        if shape is not None and a.shape[2:] != shape:
            raise InputError(f"the modalities of a block differ in size: {shape} and {a.shape[2:]}")
        shape = a.shape[2:]
        if encodings is None:
            phys = a.astype(np.float32, copy=False)
        else:
            encs = encodings[spec.modality]
            if len(encs) != len(spec.bands):
                raise InputError(f"{spec.modality}: {len(spec.bands)} bands but {len(encs)} encodings")
            phys = np.empty(a.shape, dtype=np.float32)
            for c, enc in enumerate(encs):
                phys[:, c] = decode(a[:, c], enc)
        out[spec.modality] = phys
    return out


def valid_pixels(physical: Mapping[str, np.ndarray],
                 finite: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """(height, width): every band of every modality has a value at one time step at least
    (:func:`.preprocessing.valid_pixels` per modality); ``finite``: ``np.isfinite`` of each
    modality's values when the caller has it already."""
    finite = finite or {m: np.isfinite(p) for m, p in physical.items()}
    return np.logical_and.reduce([f.any(axis=0).all(axis=0) for f in finite.values()])


def unit_warnings(physical: Mapping[str, np.ndarray], card: ModelCard, checked: set) -> list[str]:
    """Warn once per band whose decoded values are mostly outside the plausible range of its unit."""
    out = []
    for spec in card.inputs:
        phys = physical[spec.modality]
        for c, band in enumerate(spec.bands):
            key = (spec.modality, band.name)
            if key in checked:
                continue
            values = phys[:, c][np.isfinite(phys[:, c])]
            if values.size == 0:
                continue
            checked.add(key)
            median = float(np.median(values))
            # Backscatter in dB is negative over almost all land; a positive median means linear
            # power or reflectance was given, though such values lie inside the dB range.
            positive_db = band.unit == "dB" and median >= 0
            if implausible_fraction(values, band.unit) < 0.5 and not positive_db:
                continue
            lo, hi = UNITS[band.unit]
            if band.unit == "reflectance" and median > 20:
                hint = ("look like reflectance x 10000, not 0-1; "
                        "declare the encoding 'reflectance x 10000 (L2A DN)'")
            elif positive_db and median <= 2:
                hint = "look like reflectance or linear power, not dB; check the layer and its encoding"
            else:
                hint = f"are mostly outside {lo:g}..{hi:g} {band.unit}; check the layer and its encoding"
            out.append(f"values of {spec.modality} {band.name} (median {median:.4g}) {hint}")
    return out


def context_tensor(spec: ContextSpec, card: ModelCard, steps: Mapping[str, np.ndarray],
                   keep: np.ndarray, context: BlockContext | None) -> np.ndarray:
    """One context input over the pixels ``keep`` (flat boolean), encoded as the card says
    (:class:`.definitions.ContextEncoding`), float32 with the pixels first. ``steps``: per
    modality, (time, H, W) whether every band has a value (:func:`.context.step_available`)."""
    n = int(keep.sum())
    if spec.kind == ContextKind.MASK:
        available = steps[spec.modality]
        return np.ascontiguousarray(available.reshape(len(available), -1).T[keep], dtype=np.float32)
    if spec.kind == ContextKind.MONTH:
        if context is None or context.months is None:
            raise InputError(f"model {card.name} takes the month of each time step; this route was not "
                             "given the layers' dates")
        m = encode_month(context.months, spec.encoding)
        return np.ascontiguousarray(np.broadcast_to(m, (n, *m.shape)), dtype=np.float32)
    if context is None or context.lat is None or context.lon is None:
        raise InputError(f"model {card.name} takes each pixel's latitude/longitude; this route was not "
                         "given the block's grid")
    return encode_latlon(context.lat.ravel()[keep], context.lon.ravel()[keep], spec.encoding)


def prepare_block(arrays: Mapping[str, np.ndarray], card: ModelCard,
                  encodings: Mapping[str, Sequence[Encoding]] | None = None,
                  checked: set | None = None, context: BlockContext | None = None) -> Prepared:
    """Decode, check units, mask and standardise a block into the network's tensors: (1, time,
    bands, H, W) for a spatial card, (valid pixels, time, bands) for a per-pixel card, plus its
    context inputs (:func:`context_tensor`). Kept apart from :func:`run_block` so the engine can
    do it in its read-ahead thread. Units are checked for the bands not yet in ``checked``
    (added to it); not at all without ``checked``."""
    physical = physical_block(arrays, card, encodings)
    messages = [] if checked is None else unit_warnings(physical, card, checked)
    # then impossible values become gaps, as in training (the unit check above needs them)
    physical = {s.modality: mask_implausible(physical[s.modality][None], [b.unit for b in s.bands])[0]
                for s in card.inputs}
    finite = {m: np.isfinite(p) for m, p in physical.items()}  # once: valid, steps and NaN fill use it
    valid = valid_pixels(physical, finite)
    steps = {m: f.all(axis=1) for m, f in finite.items()}  # the mask inputs, as context.step_available
    by_step = np.logical_or.reduce(list(steps.values()))
    if card.time.min_steps is not None:  # a pixel with fewer steps than the model accepts: nodata
        valid &= by_step.sum(axis=0) >= card.time.min_steps
    tensors = {}
    for spec in card.inputs:
        phys = physical[spec.modality]
        if card.spatial:
            tensors[spec.tensor] = standardize(phys[None], spec)[0]
            continue
        # Standardised as (time, bands, pixels), each band's pixels contiguous (bands last is several
        # times slower), missing values 0 as standardize does; then pixels first, only the valid
        # ones, contiguous for ONNX Runtime's batches: one copy.
        x = scale(phys.reshape(*phys.shape[:2], -1), spec, trailing_axes=1)
        x[~finite[spec.modality].reshape(x.shape)] = 0.0
        x = x.transpose(2, 0, 1)
        tensors[spec.tensor] = np.ascontiguousarray(x) if valid.all() else x[valid.ravel()]
    for c in card.context:
        tensors[c.tensor] = context_tensor(c, card, steps, valid.ravel(), context)
    return Prepared(tensors, valid, messages, by_step[:, valid].any(axis=1))


def run_block(session: ModelSession, card: ModelCard, prepared: Prepared, batch: int = DEFAULT_BATCH,
              check_cancel: Callable[[], None] | None = None) -> np.ndarray:
    """The network's raw values (values, height, width) over the block; 0 where a per-pixel model
    was not run (invalid pixels). Per-pixel models run in batches of ``batch`` pixels."""
    k = values_per_pixel(card)
    height, width = prepared.valid.shape
    if card.spatial:
        if not prepared.valid.any():
            return np.zeros((k, height, width), dtype=np.float32)
        if check_cancel:
            check_cancel()
        raw = np.asarray(session.run(prepared.tensors)[0], dtype=np.float32)
        if raw.shape != (1, k, height, width):
            raise ModelError(f"model {card.name} returned {raw.shape} for a tile of {height} x {width} "
                             f"px; a spatial model must return (1, {k}, {height}, {width}), one value "
                             "set per input pixel")
        return raw[0]
    n = int(prepared.valid.sum())
    result = np.empty((n, k), dtype=np.float32)
    for b in range(0, n, batch):
        if check_cancel:
            check_cancel()
        feeds = {name: np.ascontiguousarray(x[b:b + batch]) for name, x in prepared.tensors.items()}
        raw = np.asarray(session.run(feeds)[0], dtype=np.float32)
        rows = min(batch, n - b)
        if raw.size != rows * k or raw.shape[0] != rows:  # never reshape a scrambled layout into a map
            raise ModelError(f"model {card.name} returned {raw.shape} for a batch of {rows} pixels, "
                             f"not ({rows}, {k})")
        result[b:b + batch] = raw.reshape(rows, k)
    out = np.zeros((k, height * width), dtype=np.float32)
    out[:, prepared.valid.ravel()] = result.T
    return out.reshape(k, height, width)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 (values, pixels)."""
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def finish_block(card: ModelCard, values: np.ndarray, valid: np.ndarray,
                 probabilities: bool = False) -> BlockOutputs:
    """Raw values (values, height, width) -> the card's maps: softmax when the card's activation
    is ``none``, then class ids and confidence; or scale + offset for regression. Nodata wherever
    ``valid`` is False."""
    flat = values.reshape(values.shape[0], -1)[:, valid.ravel()]
    shape = valid.shape
    if card.task != "classification":
        value = np.full(shape, np.nan, dtype=np.float32)
        value[valid] = flat[0] * np.float32(card.output.scale) + np.float32(card.output.offset)
        return BlockOutputs(value, valid)
    probs = _softmax(flat) if card.output.activation == "none" else flat
    ids = np.array([c.id for c in card.output.classes], dtype=np.uint8)
    cls = np.zeros(shape, dtype=np.uint8)
    conf = np.full(shape, np.nan, dtype=np.float32)
    if flat.shape[1]:
        cls[valid] = ids[probs.argmax(axis=0)]
        conf[valid] = probs.max(axis=0)
    full = None
    if probabilities:
        full = np.full((flat.shape[0], *shape), np.nan, dtype=np.float32)
        full[:, valid] = probs
    return BlockOutputs(cls, valid, conf, full)


def predict_block(arrays: Mapping[str, np.ndarray], card: ModelCard, session: ModelSession, *,
                  encodings: Mapping[str, Sequence[Encoding]] | None = None, trim: int = 0,
                  batch: int = DEFAULT_BATCH, probabilities: bool = False, check_units: bool = True,
                  check_cancel: Callable[[], None] | None = None,
                  context: BlockContext | None = None) -> BlockOutputs:
    """Predict one block (see the module docstring for the array convention).

    ``trim`` pixels are dropped on every side of the outputs: ``card.halo`` when the arrays carry
    context around the part wanted back. Wrappers whose framework trims the overlap itself (Dask's
    ``map_overlap``, openEO's ``apply_neighborhood``) pass 0. ``check_units`` False skips the
    unit warnings (a median per band) for callers that checked another block already. ``context``:
    months and latitude/longitude for a card with such context inputs.
    """
    prepared = prepare_block(arrays, card, encodings, set() if check_units else None, context)
    values = run_block(session, card, prepared, batch, check_cancel)
    valid = prepared.valid
    if trim:
        if 2 * trim >= min(valid.shape):
            raise InputError(f"a block of {valid.shape[0]} x {valid.shape[1]} px is too small to trim "
                             f"{trim} px of context from each side")
        values, valid = values[:, trim:-trim, trim:-trim], valid[trim:-trim, trim:-trim]
    out = finish_block(card, values, valid, probabilities)
    out.warnings = prepared.messages
    return out
