"""Map the layers a user has onto the bands x time steps a model card asks for.

Layers come in three layouts: one spectral band per layer with time steps as raster bands (the
WorldCereal netCDF cube), one date per layer with spectral bands as raster bands, or one stacked
layer holding time x bands in a declared, time-major order. Bands are recognised from band
descriptions, netCDF variable names and file/layer names; an explicit mapping overrides that, and
anything missing or given twice is refused with a message listing it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .card import ModelCard
from .definitions import Modality, TimeLayout
from .errors import InputError
from .units import PRESETS, Encoding, preset

# Spellings of S1 polarisations and S2 bands: VV, sigma0_vv, S1-SIGMA0-VV; B4, B04, S2-L2A-B04.
_S1 = re.compile(r"(?:^|[^a-z0-9])(?:s1[^a-z0-9]*)?(?:sigma0?[^a-z0-9]*|gamma0?[^a-z0-9]*)?(vv|vh|hh|hv)"
                 r"(?:$|[^a-z0-9])", re.IGNORECASE)
_S2 = re.compile(r"(?:^|[^a-z0-9])b0?(1[0-2]|[1-9]|8a)(?:$|[^a-z0-9])", re.IGNORECASE)
_S2_HINT = re.compile(r"s2|sentinel.?2|l2a|msi|optical", re.IGNORECASE)
_S1_HINT = re.compile(r"s1|sentinel.?1|sigma|sar|grd", re.IGNORECASE)
#: Other card band names and the words that identify them in layer names.
_ALIASES: dict[str, tuple[str, str]] = {
    "elevation": (Modality.DEM, "elevation|altitude|dem|alt|height"),
    "slope": (Modality.DEM, "slope|slo"),
    "temperature": (Modality.WEATHER, "temperature|tmean|temp|t2m|temperature_2m"),
    "precipitation": (Modality.WEATHER, "precipitation|precip|prec|tp|total_precipitation"),
}


def normalise_band(modality: str, name: str) -> str:
    """Canonical band spelling: ``B4``/``b04`` -> ``B04``, ``vv`` -> ``VV``, ``temperature_2m`` ->
    ``temperature`` (weather/DEM aliases), others lower-case."""
    n = name.strip()
    if modality == Modality.S2:
        m = re.fullmatch(r"b0?(1[0-2]|[1-9]|8a)", n, re.IGNORECASE)
        if m:
            d = m.group(1).upper()
            return f"B{d.zfill(2)}" if d != "8A" else "B8A"
    if modality == Modality.S1 and n.lower() in ("vv", "vh", "hh", "hv"):
        return n.upper()
    found = identify(n) if modality not in (Modality.S1, Modality.S2) else None
    return found[1] if found and found[0] == modality else n.lower()


@dataclass
class RasterInput:
    """One GDAL-readable layer and what it holds (``None``/``"auto"`` fields are recognised)."""

    path: str
    modality: str | None = None
    layout: TimeLayout = TimeLayout.AUTO
    band: str | None = None
    time_index: int | None = None
    bands: list[str] | None = None
    encoding: Encoding | str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in tuple(TimeLayout):
            raise InputError(f"layout of {self.path} must be one of {', '.join(TimeLayout)}, "
                             f"not {self.layout!r}")

    @property
    def label(self) -> str:
        return self.name or self.path


@dataclass(frozen=True)
class Recognition:
    """What a layer looks like it holds; ``band`` is None for multi-band layouts."""

    modality: str | None
    band: str | None
    layout: str
    reason: str
    bands: tuple[str, ...] = ()
    count: int = 0


def identify(text: str) -> tuple[str, str] | None:
    """(modality, band) named by ``text`` (a variable, description, file or layer name), if any."""
    if not text:
        return None
    s1 = _S1.search(text)
    if s1:
        return Modality.S1, s1.group(1).upper()
    s2 = _S2.search(text)
    if s2 and (_S2_HINT.search(text) or re.fullmatch(r"\W*b0?(1[0-2]|[1-9]|8a)\W*", text, re.IGNORECASE)
               or not _S1_HINT.search(text)):
        return Modality.S2, normalise_band(Modality.S2, "B" + s2.group(1))
    low = text.lower()
    for band, (modality, words) in _ALIASES.items():
        if re.search(rf"(?:^|[^a-z0-9])(?:{words})(?:$|[^a-z0-9])", low):
            return modality, band
    return None


def _metadata(path: str) -> tuple[int, list[str]]:
    from .raster_io import open_raster

    with open_raster(path) as ds:
        descriptions = [d or "" for d in ds.descriptions]
        if not any(descriptions):  # netCDF keeps the variable name in tags, not descriptions
            descriptions = [ds.tags(b).get("long_name", "") if ds.count == 1 else "" for b in ds.indexes]
        return ds.count, descriptions


def recognise(item: str | RasterInput) -> Recognition:
    """Guess modality, band and layout of one layer, saying why (shown and correctable in the GUI)."""
    from .raster_io import subdataset_name

    inp = item if isinstance(item, RasterInput) else RasterInput(str(item))
    count, descriptions = _metadata(inp.path)
    per_band = [identify(d) for d in descriptions]
    explicit_bands = tuple(normalise_band(inp.modality or "", b) for b in inp.bands or ())
    if inp.band:
        modality = inp.modality
        if modality is None:
            guess = identify(inp.band)
            modality = guess[0] if guess else None
        layout = TimeLayout.BAND_PER_LAYER if inp.layout == TimeLayout.AUTO else inp.layout
        band = normalise_band(modality or "", inp.band)
        return Recognition(modality, band, layout, "band given explicitly", count=count)
    if explicit_bands:
        layout = inp.layout if inp.layout != TimeLayout.AUTO else (
            TimeLayout.DATE_PER_LAYER if len(explicit_bands) == count else TimeLayout.STACKED)
        return Recognition(inp.modality, None, layout, "bands given explicitly", explicit_bands, count)
    if count > 1 and all(per_band):
        modalities = {m for m, _ in per_band}
        names = tuple(b for _, b in per_band)
        if len(modalities) == 1:
            modality = modalities.pop()
            layout = inp.layout
            if layout == TimeLayout.AUTO:
                layout = TimeLayout.STACKED if len(set(names)) < len(names) else TimeLayout.DATE_PER_LAYER
            if layout == TimeLayout.STACKED:
                names = tuple(dict.fromkeys(names))
            return Recognition(inp.modality or modality, None, layout,
                               f"band descriptions name {', '.join(dict.fromkeys(names))}", names, count)
    sources = [("netCDF variable", subdataset_name(inp.path) or ""), ("layer name", inp.name or ""),
               ("file name", Path(_file_part(inp.path)).stem), ("band description", descriptions[0])]
    for what, text in sources:
        found = identify(text)
        if found and (inp.modality is None or inp.modality == found[0]):
            layout = TimeLayout.BAND_PER_LAYER if inp.layout == TimeLayout.AUTO else inp.layout
            return Recognition(found[0], found[1], layout, f"{what} '{text}' names {found[0]} {found[1]}",
                               count=count)
    return Recognition(inp.modality, None, inp.layout, "nothing in its name or band descriptions "
                       "identifies a band; say which band(s) it holds", count=count)


def _file_part(path: str) -> str:
    from .raster_io import file_of

    return file_of(path)


def expand(inputs: list[RasterInput]) -> list[RasterInput]:
    """Replace a container file (a netCDF with one variable per band) by its subdatasets."""
    from .raster_io import rasterio_module

    rio = rasterio_module()
    out = []
    for inp in inputs:
        subs: list[str] = []
        if Path(inp.path).is_file() and inp.path.lower().endswith((".nc", ".nc4", ".h5", ".hdf")):
            try:
                with warnings.catch_warnings():  # a container has no geotransform of its own
                    warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)
                    with rio.open(inp.path) as ds:
                        subs = list(ds.subdatasets)
            except rio.errors.RasterioIOError:
                subs = []
        if subs:
            for s in subs:
                var = s.rsplit(":", 1)[-1]
                out.append(RasterInput(f'NETCDF:"{inp.path}":{var}', encoding=inp.encoding,
                                       time_index=inp.time_index))
        else:
            out.append(inp)
    return out


@dataclass(frozen=True)
class Slot:
    """Where one (modality, band, time step) comes from: input number and 1-based raster band."""

    input: int
    band_index: int
    encoding: Encoding


@dataclass
class InputPlan:
    """For every input tensor of the card: ``slots[modality][t][c]`` and the inputs they read."""

    card: ModelCard
    inputs: list[RasterInput]
    recognitions: list[Recognition]
    slots: dict[str, list[list[Slot]]]
    warnings: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        return sorted({s.input for rows in self.slots.values() for row in rows for s in row})

    def describe(self) -> str:
        lines = []
        for spec in self.card.inputs:
            rows = self.slots[spec.modality]
            for c, band in enumerate(spec.band_names):
                srcs = sorted({self.inputs[rows[t][c].input].label for t in range(len(rows))})
                lines.append(f"{spec.modality} {band}: {', '.join(srcs)}")
        return "\n".join(lines)


def resolve_encoding(inp: RasterInput, modality: str, band: str, unit: str, dtype: str) -> Encoding:
    """The declared encoding, or one inferred from the data type and name, else the identity."""
    enc = inp.encoding
    if isinstance(enc, Encoding):
        return enc
    if isinstance(enc, str):
        for choices in PRESETS.values():
            if enc in choices:
                return choices[enc]
        known = "; ".join(n for c in PRESETS.values() for n in c)
        raise InputError(f"unknown encoding {enc!r} for {inp.label}; known: {known}")
    integer = dtype.startswith(("uint", "int"))
    text = f"{inp.path} {inp.name or ''}".upper()
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

    Raises :class:`InputError` listing everything missing, given twice or inconsistent.
    """
    from .raster_io import open_raster

    if not inputs:
        raise InputError("no input layers given")
    inputs = expand(list(inputs))
    steps = card.time.steps
    needed = {spec.modality: {b: spec.bands[c].unit for c, b in enumerate(spec.band_names)}
              for spec in card.inputs}
    offer: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    problems: list[str] = []
    recognitions: list[Recognition] = []
    dtypes: list[str] = []
    for n, inp in enumerate(inputs):
        rec = recognise(inp)
        recognitions.append(rec)
        with open_raster(inp.path) as ds:
            dtypes.append(ds.dtypes[0])
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
                enc = resolve_encoding(inputs[i], spec.modality, band, spec.bands[c].unit, dtypes[i])
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
    plan = InputPlan(card, inputs, recognitions, slots)
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
