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
from .definitions import TimeLayout
from .errors import InputError
from .raster_io import Grid, read_header, subdatasets
from .recognition import RasterInput, Recognition, normalise_band, recognise
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
                             time_index=inp.time_index) for sub in subs] or [inp]
        for part in parts:
            out.append(part if part.header else replace(part, header=read_header(part.path)))
            origins.append(n)
    return out, origins


@dataclass(frozen=True)
class Slot:
    """Where one (modality, band, time step) comes from: input number and 1-based raster band."""

    input: int
    band_index: int
    encoding: Encoding


@dataclass
class InputPlan:
    """For every input tensor of the card: ``slots[modality][t][c]`` and the inputs they read.

    ``inputs`` are the layers after :func:`expand`, each with its header; ``origins[n]`` is the
    number of the input (as given) that layer ``n`` came from.
    """

    card: ModelCard
    inputs: list[RasterInput]
    origins: list[int]
    slots: dict[str, list[list[Slot]]]
    warnings: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        """The layers at least one slot reads, in order."""
        return sorted({s.input for rows in self.slots.values() for row in rows for s in row})

    def reference_grid(self, reference: int | str) -> tuple[Grid, str]:
        """The grid outputs are written on, and where it comes from: input number ``reference``
        (as given; a container's first variable), or any raster's path."""
        if isinstance(reference, int):
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
                srcs = sorted({self.inputs[rows[t][c].input].label for t in range(len(rows))})
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
        for choices in PRESETS.values():
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


def match_inputs(card: ModelCard, inputs: list[RasterInput]) -> InputPlan:
    """Assign every (modality, band, time step) the card needs to one input and raster band.

    Every layer's header is read once here (:func:`expand`) and kept in the plan. Raises
    :class:`InputError` listing everything missing, given twice or inconsistent.
    """
    if not inputs:
        raise InputError("no input layers given")
    inputs, origins = expand(list(inputs))
    steps = card.time.steps
    needed = {spec.modality: {b: spec.bands[c].unit for c, b in enumerate(spec.band_names)}
              for spec in card.inputs}
    offer: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    problems: list[str] = []
    recognitions: list[Recognition] = []
    for n, inp in enumerate(inputs):
        rec = recognise(inp, inp.header)
        recognitions.append(rec)
        if rec.modality not in needed:
            continue
        for (band, t, index) in _layout_slots(inp, rec, steps, problems):
            key = normalise_band(rec.modality, band)
            offer.setdefault((rec.modality, key, t), []).append((n, index))
    slots: dict[str, list[list[Slot]]] = {}
    missing: list[str] = []
    for spec in card.inputs:
        rows: list[list[Slot]] = [[] for _ in range(steps)]
        for c, band in enumerate(spec.band_names):
            key = normalise_band(spec.modality, band)
            absent = []
            for t in range(steps):
                given = offer.get((spec.modality, key, t), [])
                if not given:
                    absent.append(t)
                    continue
                if len(given) > 1:
                    who = " and ".join(f"{inputs[i].label} (band {b})" for i, b in given)
                    problems.append(f"{spec.modality} {band} time step {t + 1} is given by both {who}; "
                                    "remove one or say which band each layer holds")
                    continue
                i, b = given[0]
                enc = resolve_encoding(inputs[i], spec.bands[c].unit)
                rows[t].append(Slot(i, b, enc))
            if absent:
                missing.append(f"{spec.modality} {band} ({_steps(absent, steps)})")
        slots[spec.modality] = rows
    if missing:
        problems.insert(0, "missing: " + "; ".join(missing))
    if problems:
        unrecognised = [f"{inputs[n].label}: {r.reason}"
                        for n, r in enumerate(recognitions) if r.modality is None]
        extra = ("\nlayers not recognised: " + "; ".join(unrecognised)) if unrecognised else ""
        raise InputError(f"the layers do not match model '{card.name}':\n- " + "\n- ".join(problems) + extra)
    plan = InputPlan(card, inputs, origins, slots)
    unused = [inputs[n].label for n in range(len(inputs)) if n not in plan.used]
    if unused:
        plan.warnings.append(f"not used by the model: {', '.join(unused)}")
    return plan


def _steps(absent: list[int], steps: int) -> str:
    if len(absent) == steps:
        return f"all {steps} time steps" if steps > 1 else "its only time step"
    return "time step(s) " + ", ".join(str(t + 1) for t in absent)


def _layout_slots(inp: RasterInput, rec: Recognition, steps: int, problems: list[str]):
    """(band, time step, 1-based raster band) triples one input offers, per its layout."""
    label, count = inp.label, rec.count
    if rec.layout == TimeLayout.BAND_PER_LAYER and rec.band:
        start = inp.time_index or 0
        if count == 1:
            return [(rec.band, start, 1)] if inp.time_index is not None or steps == 1 else \
                _wrong_steps(problems, label, count, steps, "one layer per band needs a raster band per "
                             "time step, or give its time_index")
        if count - start < steps or (count != steps and inp.time_index is None):
            return _wrong_steps(problems, label, count - start, steps,
                                "set time_index to the first step to use" if count > steps else "")
        return [(rec.band, t, start + t + 1) for t in range(steps)]  # time_index: first raster band used
    if rec.layout == TimeLayout.DATE_PER_LAYER and rec.bands:
        if len(rec.bands) != count:
            problems.append(f"{label} has {count} raster bands but {len(rec.bands)} band names were given")
            return []
        if inp.time_index is None and steps > 1:
            problems.append(f"{label} holds one date: say which time step it is "
                            f"(time_index 0-{steps - 1}, 0 = oldest)")
            return []
        return [(b, inp.time_index or 0, k + 1) for k, b in enumerate(rec.bands)]
    if rec.layout == TimeLayout.STACKED and rec.bands:
        nb = len(rec.bands)
        if count % nb or count // nb != steps:
            return _wrong_steps(problems, label, count / nb, steps,
                                f"a stacked layer holds time x bands ({steps} x {nb} = "
                                f"{steps * nb} raster bands), not {count}")
        return [(b, t, t * nb + k + 1) for t in range(steps) for k, b in enumerate(rec.bands)]
    problems.append(f"{label}: {rec.reason}" if rec.modality is None or rec.layout == TimeLayout.AUTO else
                    f"{label} has layout {rec.layout} but does not say which band(s) it holds")
    return []


def _wrong_steps(problems: list[str], label: str, got: float, steps: int, hint: str) -> list:
    got_text = f"{got:g}" if isinstance(got, float) else str(got)
    problems.append(f"{label} has {got_text} time steps but the model needs {steps}"
                    + (f" ({hint})" if hint else ""))
    return []
