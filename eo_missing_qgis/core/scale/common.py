"""What the Dask and openEO wrappers share: xarray bands -> the block convention, and one ONNX
Runtime session per process.

An xarray input is either a ``Dataset`` with one variable per band (dims ``t``/``time``, ``y``,
``x``; the WorldCereal cube opened with xarray) or a ``DataArray`` (t, bands, y, x) whose ``bands``
labels name the bands (an openEO data cube). Names are recognised as for raster layers
(``S2-L2A-B04``, ``B04``, ``VV``, ``S1-SIGMA0-VH``...), and encodings are inferred from the data
type and name as for raster layers unless given per modality.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..card import ModelCard
from ..errors import InputError
from ..raster_inputs import encoding_for
from ..recognition import identify, normalise_band
from ..session import ModelSession, open_session
from ..time_axis import TimeAxis, anchor, month_label, parse_month
from ..units import Encoding

_TIME_DIMS = ("t", "time")
_BAND_DIMS = ("bands", "band")

#: Sessions opened in this process, by (model path, device, threads): a Dask worker or an openEO
#: UDF process loads each model once, not once per block.
_SESSIONS: dict[tuple[str, str, int | None], ModelSession] = {}


def cached_session(model: str, device: str = "cpu", threads: int | None = None) -> ModelSession:
    """The process's session for ``model``, opened on first use."""
    key = (str(model), device, threads)
    if key not in _SESSIONS:
        _SESSIONS[key] = open_session(model, device, threads)
    return _SESSIONS[key]


def _layers(data: Any) -> dict[str, Any]:
    """Name -> DataArray (time, y, x) of every band of ``data``."""
    if hasattr(data, "data_vars"):
        return {str(n): v for n, v in data.data_vars.items()}
    dim = next((d for d in _BAND_DIMS if d in data.dims), None)
    if dim is None:
        raise InputError(f"a DataArray needs a 'bands' dimension naming its bands; it has {data.dims}")
    return {str(label): data.isel({dim: k}) for k, label in enumerate(data[dim].values)}


def _time_first(layer: Any, name: str, card: ModelCard) -> Any:
    tdim = next((d for d in _TIME_DIMS if d in layer.dims), None)
    if tdim is None or set(layer.dims) != {tdim, "y", "x"}:
        raise InputError(f"band {name} must have dimensions (t, y, x), it has {layer.dims}")
    if layer.sizes[tdim] != card.time.steps:
        raise InputError(f"band {name} has {layer.sizes[tdim]} time steps but model {card.name} "
                         f"needs {card.time.steps} ({card.time.step}ly, oldest first)")
    return layer.transpose(tdim, "y", "x")


def _encoding(name: str, layer: Any, unit: str,
              given: Encoding | str | None) -> Encoding:
    """As for a raster layer (its attributes as product metadata); a fill value the data declare is
    nodata unless the encoding has one."""
    enc = encoding_for(given, unit, str(layer.dtype), name, name, {k: str(v) for k, v in layer.attrs.items()})
    fill = layer.attrs.get("_FillValue", layer.attrs.get("nodata", layer.encoding.get("_FillValue")))
    if enc.nodata is None and fill is not None and np.isfinite(fill):
        enc = dataclasses.replace(enc, nodata=float(fill))
    return enc


def block_inputs(data: Any, card: ModelCard, encodings: Mapping[str, Encoding | str] | None = None
                 ) -> tuple[dict[str, Any], dict[str, list[Encoding]]]:
    """Per modality of ``card``: the stored values as one array (time, bands, y, x) in the card's
    band order (numpy or dask, as ``data`` holds them) and one encoding per band."""
    import xarray as xr

    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for name, layer in _layers(data).items():
        hit = identify(name)
        if hit:
            found.setdefault((hit[0], normalise_band(hit[0], hit[1])), (name, layer))
    arrays, encs, missing = {}, {}, []
    for spec in card.inputs:
        layers, encs[spec.modality] = [], []
        for band in spec.bands:
            key = (spec.modality, normalise_band(spec.modality, band.name))
            if key not in found:
                missing.append(f"{spec.modality} {band.name}")
                continue
            name, layer = found[key]
            layers.append(_time_first(layer, name, card).drop_vars(_BAND_DIMS, errors="ignore"))
            given = (encodings or {}).get(spec.modality)
            encs[spec.modality].append(_encoding(name, layer, band.unit, given))
        if layers:
            arrays[spec.modality] = xr.concat(layers, dim="bands", coords="minimal",
                                              compat="override").transpose(layers[0].dims[0], "bands",
                                                                           "y", "x").data
    if missing:
        raise InputError(f"the data lack bands model {card.name} needs: {', '.join(missing)} "
                         f"(bands found: {', '.join(f'{m} {b}' for m, b in found) or 'none'})")
    return arrays, encs


def step_months(data: Any, card: ModelCard, source: str) -> list[int]:
    """The calendar month of each step for a card taking the month: from ``data``'s time
    coordinate when it holds dates (which must be the card's consecutive months), else from a
    calendar card's ``first_month``; ``source`` names ``data`` in errors ("dataset", "cube")."""
    tdim = next((d for d in _TIME_DIMS if d in data.coords), None)
    start = None
    if tdim is not None and np.issubdtype(data[tdim].dtype, np.datetime64):
        counts = [parse_month(str(v), f"time step {k + 1}") for k, v in enumerate(data[tdim].values)]
        start = anchor(card, counts)
        if counts != [start + t for t in range(card.time.steps)]:
            raise InputError(f"the {source}'s dates ({', '.join(month_label(c) for c in counts)}) are not "
                             f"{card.time.steps} consecutive months from {month_label(start)}, as model "
                             f"{card.name} takes them; select those months")
    months = TimeAxis.build(card, start, [True] * card.time.steps).months
    if None in months:
        raise InputError(f"model {card.name} takes the calendar month of each time step: give the {source} "
                         f"a time coordinate ('{tdim or 't'}') of dates")
    return [int(m) for m in months if m is not None]
