"""Plan a run's inputs: map the layers a user has onto the bands x time steps a model card asks for.

Layers come in three layouts: one spectral band per layer with time steps as raster bands (the
WorldCereal netCDF cube), one date per layer with spectral bands as raster bands, or one stacked
layer holding time x bands in a declared, time-major order. What each layer holds is recognised
by :mod:`.recognition` (an explicit mapping overrides it); anything missing or given twice is
refused with a message listing it. The plan keeps every layer's header, read once, and gives the
reference grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .card import ModelCard
from .dates import l1c_reason, recognised_dates
from .definitions import TimeLayout
from .errors import InputError
from .raster_io import Grid, pixel_area, read_header, subdatasets
from .recognition import RasterInput, Recognition, normalise_band, recognise
from .time_axis import TimeAxis, anchor, parse_month
from .units import BOA_OFFSET_PRESET, PRESETS, Encoding, preset, product_offset


def expand(inputs: list[RasterInput]) -> tuple[list[RasterInput], list[int]]:
    """Replace a container file (a netCDF with one variable per band) by its subdatasets, and give
    every layer its header, read here once for the whole run (a header already read is kept).

    Returns the layers and, for each, the number of the input it came from.
    """
    out: list[RasterInput] = []
    origins: list[int] = []
    for n, inp in enumerate(inputs):
        subs = [] if inp.header else subdatasets(inp.path)
        parts = [RasterInput(f'NETCDF:"{inp.path}":{sub.rsplit(":", 1)[-1]}', encoding=inp.encoding,
                             time_index=inp.time_index, dates=inp.dates) for sub in subs] or [inp]
        for part in parts:
            out.append(part if part.header else replace(part, header=read_header(part.path)))
            origins.append(n)
    return out, origins


@dataclass(frozen=True)
class Slot:
    """Where one (modality, band, time step) comes from: input number and 1-based raster band
    (with ``also``: several dated layers of one month, composited)."""

    input: int
    band_index: int
    encoding: Encoding
    #: Other dates of the same month (dated layers): the step is their per-pixel median.
    also: tuple[Slot, ...] = ()

    def parts(self) -> tuple[Slot, ...]:
        """This slot and the other dates composited with it."""
        return (self, *self.also)


@dataclass
class InputPlan:
    """For every input tensor of the card: ``slots[modality][t][c]`` and the inputs they read.

    ``inputs`` are the layers after :func:`expand`, each with its header; ``origins[n]`` is the
    number of the input (as given) that layer ``n`` came from. A step no layer gives (allowed down
    to the card's ``min_steps``) has an empty row. ``time`` says which month each step is.
    """

    card: ModelCard
    inputs: list[RasterInput]
    origins: list[int]
    slots: dict[str, list[list[Slot]]]
    time: TimeAxis
    warnings: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        """The layers at least one slot reads, in order."""
        return sorted({part.input for rows in self.slots.values() for row in rows for s in row
                       for part in s.parts()})

    def reference_grid(self, reference: int | str | None) -> tuple[Grid, str]:
        """The grid outputs are written on, and where it comes from: the finest input's (None),
        input number ``reference`` (as given; a container's first variable), or any raster's path."""
        if reference is None:  # the finest pixels, so no input loses detail; the first on a tie
            areas = [pixel_area(i.header, self.inputs[0].header) for i in self.inputs]
            header = self.inputs[next(k for k, a in enumerate(areas) if a <= 1.01 * min(areas))].header
        elif isinstance(reference, int):
            given = self.origins[-1] + 1 if self.origins else 0
            if not 0 <= reference < given:
                raise InputError(f"reference input {reference} does not exist (there are {given} inputs)")
            header = self.inputs[self.origins.index(reference)].header
        else:
            known = [i.header for i in self.inputs if i.path == str(reference)]
            header = known[0] if known else read_header(str(reference))
        return header.grid, header.path

    def describe(self) -> str:
        """One line per card band: which layers provide it."""
        lines = []
        for spec in self.card.inputs:
            rows = self.slots[spec.modality]
            for c, band in enumerate(spec.band_names):
                srcs = sorted({self.inputs[row[c].input].label for row in rows if row})
                lines.append(f"{spec.modality} {band}: {', '.join(srcs)}")
        return "\n".join(lines)


def resolve_encoding(inp: RasterInput, unit: str) -> Encoding:
    """The declared encoding, or one inferred from product metadata, the data type and name, else
    the identity."""
    return encoding_for(inp.encoding, unit, inp.header.dtype, f"{inp.path} {inp.name or ''}", inp.label,
                        inp.header.metadata)


def encoding_for(enc: Encoding | str | None, unit: str, dtype: str, text: str, label: str,
                 metadata: Mapping[str, str] | None = None) -> Encoding:
    """``enc`` as an :class:`.Encoding`; when None, inferred from the product ``metadata`` (the
    Sentinel-2 L2A offset), the data type and the name ``text`` (of a layer or an array); ``label``
    names the data in errors."""
    if isinstance(enc, Encoding):
        return enc
    if isinstance(enc, str):
        for of_unit, choices in PRESETS.items():
            if enc in choices and of_unit != unit:  # e.g. one encoding for a multi-sensor stack
                raise InputError(f"encoding {enc!r} of {label} is for values in {of_unit}, but the model "
                                 f"reads values in {unit} from it; give the layer once per modality, each "
                                 "with its own encoding")
            if enc in choices:
                return choices[enc]
        known = "; ".join(n for c in PRESETS.values() for n in c)
        raise InputError(f"unknown encoding {enc!r} for {label}; known: {known}")
    stated = product_offset(metadata or {}) if unit == "reflectance" else None
    if stated:
        dn = stated[0]
        return preset(unit, BOA_OFFSET_PRESET) if dn == -1000 else \
            preset(unit, "reflectance x 10000 (L2A DN)") if dn == 0 else \
            Encoding(scale=1e-4, offset=dn * 1e-4, nodata=0)
    integer = dtype.startswith(("uint", "int"))
    text = text.upper()
    if unit == "dB" and dtype == "uint16" and "SIGMA0" in text:
        return preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")
    if unit == "reflectance" and integer:
        return preset("reflectance", "reflectance x 10000 (L2A DN)")
    if unit == "K" and dtype == "uint16" and "AGERA5" in text:
        return preset("K", "K x 100 (AgERA5)")
    if unit == "mm" and dtype == "uint16" and "AGERA5" in text:
        return preset("mm", "mm x 100 (AgERA5)")
    return preset(unit)


def layer_dates(inp: RasterInput, rec: Recognition | None = None) -> list[int] | None:
    """The month counts of a layer's dates (:func:`.time_axis.parse_month`), None when unknown.

    The dates the user gives win; else, when no time step is given either, the dates the data
    carry (:func:`.dates.recognised_dates`), kept only when they fit the layer as recognised
    (``rec``): one date for a one-date layer, one per raster band for a one-band layer, so a
    time-series stack is still placed by its order.
    """
    if inp.dates:
        return [parse_month(d, inp.label) for d in inp.dates]
    if inp.time_index is not None or inp.header is None or rec is None:
        return None
    found = recognised_dates(inp.path, inp.header.metadata, inp.header.descriptions)
    if not found or len(found) != _dates_wanted(rec):
        return None
    return [parse_month(d, inp.label) for d in found]


def _dates_wanted(rec: Recognition) -> int | None:
    """How many dates a layer takes: one for a one-date layer (spectral bands as raster bands),
    one per raster band for a one-band layer; None for other layouts."""
    if rec.layout == TimeLayout.BAND_PER_LAYER and rec.band:
        return rec.count
    if rec.layout == TimeLayout.DATE_PER_LAYER and rec.bands and len(rec.bands) == rec.count:
        return 1
    return None


def match_inputs(card: ModelCard, inputs: list[RasterInput]) -> InputPlan:
    """Assign every (modality, band, time step) the card needs to one input and raster band.

    Every layer's header is read once here (:func:`expand`) and kept in the plan. Layers with
    dates are placed on the card's months by them. A card with ``min_steps`` runs without some of
    its steps (every band of a modality missing at that step). Raises :class:`InputError` listing
    everything missing, given twice or inconsistent.
    """
    if not inputs:
        raise InputError("no input layers given")
    inputs, origins = expand(list(inputs))
    steps = card.time.steps
    recognitions = [recognise(inp, inp.header) for inp in inputs]
    dates = [layer_dates(inp, rec) for inp, rec in zip(inputs, recognitions, strict=True)]
    known = [m for d in dates if d for m in d]
    start = anchor(card, known) if known else None
    flexible = card.time.required < steps
    needed = {spec.modality: {b: spec.bands[c].unit for c, b in enumerate(spec.band_names)}
              for spec in card.inputs}
    offer: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    problems: list[str] = []
    notes: list[str] = []
    for n, (inp, rec) in enumerate(zip(inputs, recognitions, strict=True)):
        if not set(rec.modalities) & needed.keys():
            continue
        refusal = _l1c_refusal(card, inp, rec)
        if refusal:
            problems.append(refusal)
            continue
        steps_of = [m - start for m in dates[n]] if start is not None and dates[n] else None
        for (modality, band, t, index) in _layout_slots(inp, rec, steps, problems, notes, steps_of):
            if modality in needed:
                offer.setdefault((modality, normalise_band(modality, band), t), []).append((n, index))
        skipped = [m for m in rec.modalities if m not in needed]
        if rec.sensors and skipped:
            notes.append(f"{inp.label}: its {', '.join(skipped)} bands are not used by the model")
    slots: dict[str, list[list[Slot]]] = {}
    missing: list[str] = []
    step_given = [False] * steps
    for spec in card.inputs:
        rows: list[list[Slot]] = [[] for _ in range(steps)]
        offered = {t for t in range(steps) for b in spec.band_names
                   if offer.get((spec.modality, normalise_band(spec.modality, b), t))}
        # A flexible card may lack whole steps of a modality, but not part of a step's bands.
        skip = set(range(steps)) - offered if flexible and offered else set()
        for t in offered:
            step_given[t] = True
        for c, band in enumerate(spec.band_names):
            key = normalise_band(spec.modality, band)
            absent = []
            for t in sorted(set(range(steps)) - skip):
                given = offer.get((spec.modality, key, t), [])
                if not given:
                    absent.append(t)
                    continue
                if len(given) > 1 and not all(dates[i] for i, _ in given):
                    who = " and ".join(f"{inputs[i].label} (band {b})" for i, b in given)
                    problems.append(f"{spec.modality} {band} time step {t + 1} is given by both {who}; "
                                    "remove one or say which band each layer holds")
                    continue
                parts = [Slot(i, b, resolve_encoding(inputs[i], spec.bands[c].unit)) for i, b in given]
                rows[t].append(replace(parts[0], also=tuple(parts[1:])))
                if len(parts) > 1 and c == 0:
                    notes.append(f"{spec.modality} step {t + 1}: {len(parts)} dates of one month composited "
                                 "(per-pixel median of the valid values)")
            if absent:
                missing.append(f"{spec.modality} {band} ({_steps(absent, steps)})")
        slots[spec.modality] = rows
    if missing:
        problems.insert(0, "missing: " + "; ".join(missing))
    axis = TimeAxis.build(card, start, step_given)
    # Dated layers (or a flexible card) short of months: say which months to add, first.
    if (start is not None or (flexible and not missing)) and len(axis.used) < card.time.required:
        problems.insert(0, f"model '{card.name}' needs at least {card.time.required} of its {steps} monthly "
                           f"steps, the layers give {axis.summary()}: add layers for "
                           f"{card.time.required - len(axis.used)} more of the missing months")
    if problems:
        unrecognised = [f"{inputs[n].label}: {r.reason}"
                        for n, r in enumerate(recognitions) if not r.modalities]
        extra = ("\nlayers not recognised: " + "; ".join(unrecognised)) if unrecognised else ""
        raise InputError(f"the layers do not match model '{card.name}':\n- " + "\n- ".join(problems) + extra)
    plan = InputPlan(card, inputs, origins, slots, axis, notes)
    unused = [inputs[n].label for n in range(len(inputs)) if n not in plan.used]
    if unused:
        plan.warnings.append(f"not used by the model: {', '.join(unused)}")
    return plan


def _l1c_refusal(card: ModelCard, inp: RasterInput, rec: Recognition) -> str | None:
    """Why a top-of-atmosphere (Level-1C) Sentinel-2 layer cannot feed ``card``, unless one of
    its Sentinel-2 inputs says it was trained on L1C: its values differ from L2A surface
    reflectance, so the map would be silently wrong."""
    if "S2" not in rec.modalities:
        return None
    reason = l1c_reason(inp.path, inp.header.metadata if inp.header else {})
    sensors = [spec.sensor for spec in card.inputs if spec.modality == "S2"]
    if not reason or any("L1C" in s.upper().replace("-", "") for s in sensors):
        return None
    return (f"{inp.label} is Sentinel-2 Level-1C (top-of-atmosphere reflectance): {reason}; model "
            f"'{card.name}' was trained on {', '.join(sensors) or 'Level-2A'} surface reflectance: use the "
            "Level-2A (MSIL2A) product of this scene")


def _steps(absent: list[int], steps: int) -> str:
    if len(absent) == steps:
        return f"all {steps} time steps" if steps > 1 else "its only time step"
    return "time step(s) " + ", ".join(str(t + 1) for t in absent)


def _layout_slots(inp: RasterInput, rec: Recognition, steps: int, problems: list[str], notes: list[str],
                  steps_of: list[int] | None = None):
    """(modality, band, time step, 1-based raster band) tuples one input offers, per its layout.

    A layer holding more time steps than the model needs is read from its first step (``time_index``,
    0-based) or, when none is given, from the latest steps, said in ``notes``: the CLI, Processing
    and the panel all count this way. ``steps_of``: the card step of each of the layer's dates,
    when it has dates.
    """
    label, count, modality = inp.label, rec.count, rec.modality
    if steps_of is not None:
        return _dated_slots(inp, rec, steps, problems, steps_of)
    if rec.sensors:
        return _multi_sensor_slots(inp, rec, steps, problems, notes)
    if rec.layout == TimeLayout.BAND_PER_LAYER and rec.band:
        if count == 1:
            if inp.time_index is not None or steps == 1:
                return [(modality, rec.band, inp.time_index or 0, 1)]
            return _wrong_steps(problems, label, count, steps, "one layer per band needs a raster band per "
                                "time step, or give the time step it holds")
        start = _window(label, count, steps, inp.time_index, problems, notes)
        return [] if start is None else [(modality, rec.band, t, start + t + 1) for t in range(steps)]
    if rec.layout == TimeLayout.DATE_PER_LAYER and rec.bands:
        if len(rec.bands) != count:
            problems.append(_band_count_problem(inp, rec))
            return []
        if _one_date_unplaced(inp, steps, problems):
            return []
        return [(modality, b, inp.time_index or 0, k + 1) for k, b in enumerate(rec.bands)]
    if rec.layout == TimeLayout.STACKED and rec.bands:
        nb = len(rec.bands)
        if count % nb:
            problems.append(f"{label} has {count} raster bands, which is not a whole number of time steps "
                            f"of {nb} bands ({', '.join(rec.bands)}); say which band each raster band holds")
            return []
        start = _window(label, count // nb, steps, inp.time_index, problems, notes,
                        f"a stacked layer holds time x bands ({steps} x {nb} = {steps * nb} raster bands), "
                        f"not {count}")
        return [] if start is None else [(modality, b, t, (start + t) * nb + k + 1)
                                         for t in range(steps) for k, b in enumerate(rec.bands)]
    said = rec.band or rec.bands
    problems.append(f"{label}: {rec.reason}" if not said or rec.layout == TimeLayout.AUTO else
                    f"{label} has layout {rec.layout} but does not say which band(s) it holds")
    return []


def _multi_sensor_slots(inp: RasterInput, rec: Recognition, steps: int, problems: list[str],
                        notes: list[str]) -> list[tuple[str, str, int, int]]:
    """Slots of a multi-sensor stack: the n-th raster band named (modality, band) is its n-th time
    step; a band named once among time series is static and serves every time step."""
    occurrences: dict[tuple[str, str], list[int]] = {}
    for k, (modality, band) in enumerate(zip(rec.sensors, rec.bands, strict=True)):
        if modality in rec.modalities:
            occurrences.setdefault((modality, normalise_band(modality, band)), []).append(k + 1)
    if not occurrences:
        problems.append(f"{inp.label}: {rec.reason}")
        return []
    months = max(len(found) for found in occurrences.values())
    uneven = [f"{m} {b} ({len(found)})" for (m, b), found in occurrences.items()
              if len(found) not in (1, months)]
    if uneven:
        problems.append(f"{inp.label} holds {months} time steps of most bands but not of "
                        f"{', '.join(uneven)}; say which band each raster band holds")
        return []
    if months == 1:  # one date of every band
        if _one_date_unplaced(inp, steps, problems):
            return []
        return [(modality, band, inp.time_index or 0, found[0])
                for (modality, band), found in occurrences.items()]
    start = _window(inp.label, months, steps, inp.time_index, problems, notes)
    if start is None:
        return []
    slots = []
    for (modality, band), found in occurrences.items():
        if len(found) == 1:  # static (elevation, slope): the same band every step
            slots += [(modality, band, t, found[0]) for t in range(steps)]
        else:
            slots += [(modality, band, t, found[start + t]) for t in range(min(steps, len(found)))]
    return slots


def _one_date_unplaced(inp: RasterInput, steps: int, problems: list[str]) -> bool:
    """Whether a layer holding one date lacks the time step it is (the problem is added)."""
    if inp.time_index is None and steps > 1:
        problems.append(f"{inp.label} holds one date: say which time step it is "
                        f"(1-{steps}, 1 = oldest; CLI --time-index 0-{steps - 1}) or its date")
        return True
    return False


def _window(label: str, available: int, steps: int, first: int | None, problems: list[str],
            notes: list[str], hint: str = "") -> int | None:
    """The 0-based first of ``steps`` time steps to read out of ``available``: ``first`` when
    given, else the latest steps (said in ``notes``); None, with the problem, when they do not fit."""
    if first is not None and not 0 <= first < available:
        problems.append(f"{label} has {available} time steps: its first step must be 1-{available} "
                        f"(CLI --time-index 0-{available - 1}), not {first + 1}")
        return None
    start = max(available - steps, 0) if first is None else first
    if available - start < steps:
        hint = f"from step {start + 1} on it has {available - start}" if start else hint
        _wrong_steps(problems, label, available, steps, hint)
        return None
    if first is None and available > steps:
        notes.append(f"{label}: using its latest {steps} of {available} time steps "
                     f"({start + 1}-{available}); set the first time step to choose others")
    return start


def _dated_slots(inp: RasterInput, rec: Recognition, steps: int, problems: list[str], steps_of: list[int]):
    """Slots of a layer with dates: a one-date layer (one date) or a one-band layer (a date per
    raster band); dates outside the model's months are left out, several in one month composited."""
    label = inp.label
    want = _dates_wanted(rec)
    one_date = want == 1 and rec.layout == TimeLayout.DATE_PER_LAYER
    if rec.layout == TimeLayout.DATE_PER_LAYER and rec.bands and not one_date:
        problems.append(_band_count_problem(inp, rec))
        return []
    if want is None:
        problems.append(f"{label}: {rec.reason}" if not rec.modalities else
                        f"{label}: dates are for one-date layers (spectral bands as raster bands) or "
                        "one-band layers (a date per raster band)")
        return []
    if len(steps_of) != want:
        problems.append(f"{label} has {want} date(s) but {len(steps_of)} were given")
        return []
    if one_date and inp.time_index is not None and inp.time_index != steps_of[0]:
        problems.append(f"{label}: its date is time step {steps_of[0]} but time_index says {inp.time_index}")
        return []
    inside = [(t, k) for k, t in enumerate(steps_of) if 0 <= t < steps]
    if not inside:
        problems.append(f"{label}: its date(s) fall outside the model's {steps} months")
        return []
    if not one_date:
        return [(rec.modality, rec.band, t, k + 1) for t, k in inside]
    return [(rec.modality, b, inside[0][0], k + 1) for k, b in enumerate(rec.bands)]


def _band_count_problem(inp: RasterInput, rec: Recognition) -> str:
    return f"{inp.label} has {rec.count} raster bands but {len(rec.bands or ())} band names were given"


def _wrong_steps(problems: list[str], label: str, got: int, steps: int, hint: str) -> list:
    problems.append(f"{label} has {got} time steps but the model needs {steps}"
                    + (f" ({hint})" if hint else ""))
    return []
