"""Recognise what a raster layer holds: modality, band(s) and time layout, from band
descriptions, netCDF variable names and file/layer names, saying why (shown, and correctable, in
the GUI). Reads nothing itself: the layer's header is given (see :func:`.raster_io.read_header`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .definitions import Modality, TimeLayout
from .errors import InputError, OptionError
from .raster_io import RasterHeader, file_of, subdataset_name
from .units import Encoding

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


#: Where a user says which bands a layer holds and its first time step, in every front end.
SAY_BANDS = ("CLI --bands/--band and --time-index; Processing 'Bands and first time step per layer'; "
             "the panel's Bands and First step columns")


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
    """One GDAL-readable layer and what it holds (``None``/``"auto"`` fields are recognised);
    ``header`` is filled once, when a run first reads the layer (:func:`.raster_inputs.expand`).
    ``dates`` (``YYYY-MM[-DD]``): the date of a one-date layer, or one per raster band of a
    one-band layer; they place the layer on the card's months (:mod:`.time_axis`)."""

    path: str
    modality: str | None = None
    layout: TimeLayout = TimeLayout.AUTO
    band: str | None = None
    time_index: int | None = None
    bands: list[str] | None = None
    encoding: Encoding | str | None = None
    name: str | None = None
    dates: list[str] | None = None
    header: RasterHeader | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.layout not in tuple(TimeLayout):
            raise InputError(f"layout of {self.path} must be one of {', '.join(TimeLayout)}, "
                             f"not {self.layout!r}")
        if self.time_index is not None and self.time_index < 0:
            raise OptionError(f"time index of {self.label} must be 0 (the oldest step) or more, "
                              f"not {self.time_index}")

    @property
    def label(self) -> str:
        """How messages name the layer: its layer name, else its source."""
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
    #: A multi-sensor stack: the modality of each raster band ('' where none is named); ``bands``
    #: then names each raster band too.
    sensors: tuple[str, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Every modality the layer offers (several for a multi-sensor stack)."""
        if self.sensors:
            found = tuple(dict.fromkeys(m for m in self.sensors if m))
            return found if self.modality is None else tuple(m for m in found if m == self.modality)
        return (self.modality,) if self.modality else ()


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


def recognise(inp: RasterInput, header: RasterHeader) -> Recognition:
    """Guess modality, band and layout of one layer from its ``header``, saying why (shown and
    correctable in the GUI)."""
    count, descriptions = header.count, header.descriptions
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
    named = [found for found in per_band if found]
    if count > 1 and inp.layout != TimeLayout.BAND_PER_LAYER and len(named) * 2 > count \
            and len({m for m, _ in named}) > 1:
        return _multi_sensor(inp, per_band)
    if count > 1 and all(per_band):
        modalities = {m for m, _ in per_band}
        names = tuple(b for _, b in per_band)
        if len(modalities) == 1:
            modality = modalities.pop()
            if len(set(names)) == 1 and inp.layout in (TimeLayout.AUTO, TimeLayout.BAND_PER_LAYER):
                # every raster band is the same band (a one-band time series export): one band per layer
                return Recognition(inp.modality or modality, names[0], TimeLayout.BAND_PER_LAYER,
                                   f"every band description names {modality} {names[0]}", count=count)
            layout = inp.layout
            if layout == TimeLayout.AUTO:
                layout = TimeLayout.STACKED if len(set(names)) < len(names) else TimeLayout.DATE_PER_LAYER
            if layout == TimeLayout.STACKED:
                names = tuple(dict.fromkeys(names))
            return Recognition(inp.modality or modality, None, layout,
                               f"band descriptions name {', '.join(dict.fromkeys(names))}", names, count)
    several = dict.fromkeys(f"{m} {b}" for m, b in named)
    if len(several) > 1 and inp.layout in (TimeLayout.AUTO, TimeLayout.BAND_PER_LAYER):
        return Recognition(inp.modality, None, inp.layout, "its band descriptions name several bands ("
                           + ", ".join(list(several)[:6]) + (", ..." if len(several) > 6 else "")
                           + "), so it does not hold one band; say which band each raster band holds "
                           f"({SAY_BANDS})", count=count)
    sources = [("netCDF variable", subdataset_name(inp.path) or ""), ("layer name", inp.name or ""),
               ("file name", Path(file_of(inp.path)).stem), ("band description", descriptions[0])]
    for what, text in sources:
        found = identify(text)
        if found and (inp.modality is None or inp.modality == found[0]):
            layout = TimeLayout.BAND_PER_LAYER if inp.layout == TimeLayout.AUTO else inp.layout
            return Recognition(found[0], found[1], layout, f"{what} '{text}' names {found[0]} {found[1]}",
                               count=count)
    return Recognition(inp.modality, None, inp.layout, "nothing in its name or band descriptions "
                       f"identifies a band; say which band(s) it holds ({SAY_BANDS})", count=count)


def _multi_sensor(inp: RasterInput, per_band: list[tuple[str, str] | None]) -> Recognition:
    """A stack whose band descriptions name several modalities (an Earth Engine / CropHarvest
    export: per month VV, VH, B1 ... B12, temperature_2m, total_precipitation, then elevation,
    slope): every raster band is taken from its own description. A declared modality restricts
    the layer to that modality's bands."""
    sensors = tuple(found[0] if found else "" for found in per_band)
    bands = tuple(found[1] if found else "" for found in per_band)
    pairs = list(zip(sensors, bands, strict=True))
    summary = "; ".join(f"{m} " + ", ".join(dict.fromkeys(b for s, b in pairs if s == m))
                        for m in dict.fromkeys(s for s in sensors if s))
    unknown = sensors.count("")
    reason = (f"multi-sensor stack, band descriptions name {summary}"
              + (f"; {unknown} raster band(s) name nothing known and are skipped" if unknown else ""))
    if inp.modality:
        if inp.modality not in sensors:
            reason += f"; none of its bands is {inp.modality}"
        else:
            reason += f"; given as {inp.modality}, only its {inp.modality} bands are used"
    layout = TimeLayout.STACKED if inp.layout == TimeLayout.AUTO else inp.layout
    return Recognition(inp.modality, None, layout, reason, bands, len(sensors), sensors)
