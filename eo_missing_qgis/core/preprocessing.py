"""Card-driven preprocessing, the one implementation shared by training and inference.

Stored values (any :class:`.units.Encoding`) -> physical units (:func:`decode`) -> the card's
standardisation (:func:`scale`) -> float32 tensors in the card's layout (batch, time, bands[, H, W]).
Training builds its tensors with these functions and the engine calls the same ones, so a model sees
the same numbers in both.

One rule says which samples can be predicted (:func:`valid_pixels`): every band must have a value at
one time step at least. Single missing time steps (cloudy months) are filled with the band mean
(0 after scaling), as in training; a band missing at every step leaves nothing to fill from, so the
engine writes nodata there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .card import InputSpec
from .definitions import TensorLayout
from .units import PHYSICAL_LIMITS, Encoding


def decode(values: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Stored values -> float32 physical values; nodata, NaN and values a log cannot take become NaN."""
    values = np.asarray(values)
    x = values.astype(np.float32, copy=False)
    # Integers are always finite: skip that pass for them (raster inference decodes ~10^10 values).
    integer = np.issubdtype(values.dtype, np.integer)
    missing = np.zeros(x.shape, dtype=bool) if integer else ~np.isfinite(x)
    if encoding.nodata is not None:
        missing |= x == np.float32(encoding.nodata)
    x = x * np.float32(encoding.scale)  # a new array from here on: the caller's is never changed
    if encoding.kind != "scaled":
        missing |= x <= 0
        factor = np.float32(10.0 if encoding.kind == "power_db" else 20.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = factor * np.log10(np.where(missing, np.float32(1), x))
    x += np.float32(encoding.offset)
    if missing.any():
        x[missing] = np.nan
    return x


def to_physical(raw: np.ndarray, encodings: Sequence[Encoding]) -> np.ndarray:
    """Decode ``raw`` (..., bands) band by band; missing values become NaN."""
    raw = np.asarray(raw)
    if raw.shape[-1] != len(encodings):
        raise ValueError(f"{raw.shape[-1]} bands given but {len(encodings)} encodings")
    out = np.empty(raw.shape, dtype=np.float32)
    for c, enc in enumerate(encodings):
        out[..., c] = decode(raw[..., c], enc)
    return out


def mask_implausible(physical: np.ndarray, units: Sequence[str]) -> np.ndarray:
    """``physical`` (batch, time, bands, ...) with values outside :data:`.units.PHYSICAL_LIMITS` of
    their band's unit set to NaN (missing), so training statistics and inference treat an
    impossible value like a cloud gap. Returns the input itself when nothing needs masking."""
    if physical.shape[2] != len(units):
        raise ValueError(f"{physical.shape[2]} bands given but {len(units)} units")
    out = physical
    for c, unit in enumerate(units):
        if unit not in PHYSICAL_LIMITS:
            continue
        lo, hi = PHYSICAL_LIMITS[unit]
        band = out[:, :, c]
        with np.errstate(invalid="ignore"):
            bad = (band < lo) | (band > hi)
        if bad.any():
            if out is physical:
                out = physical.astype(np.result_type(physical.dtype, np.float32), copy=True)
            out[:, :, c][bad] = np.nan
    return out


def valid_pixels(physical: np.ndarray) -> np.ndarray:
    """Which samples can be predicted: every band has a finite value at one time step at least.

    ``physical`` is (batch, time, bands, ...): the result is (batch, ...), i.e. (batch,) per pixel
    and (batch, H, W) for spatial inputs.
    """
    return np.isfinite(physical).any(axis=1).all(axis=1)


def band_statistics(physical: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band mean and std over every sample and time step (NaN ignored), for a card's scaling."""
    flat = physical.reshape(-1, physical.shape[-1]).astype(np.float64)
    mean = np.nanmean(flat, axis=0)
    std = np.nanstd(flat, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    return [float(m) for m in mean], [float(s) for s in std]


def scale(physical: np.ndarray, spec: InputSpec, trailing_axes: int | None = None) -> np.ndarray:
    """(physical - mean) / std per band, the way training did; bands on axis 2 of either layout,
    or followed by ``trailing_axes`` axes (1 for a block (time, bands, pixels), where each band's
    pixels are contiguous: several times faster than bands last)."""
    if trailing_axes is None:
        trailing_axes = 2 if spec.layout == TensorLayout.NTCHW else 0
    trailing = (1,) * trailing_axes
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, *trailing)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, *trailing)
    out = physical - mean
    out /= std  # in place: the same numbers as (physical - mean) / std, one array less
    return out


def standardize(physical: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Scale physical values (batch, time, bands), or (batch, time, bands, H, W) for a spatial
    card, as the card says.

    Impossible values are masked first (:func:`mask_implausible`), as training did. Returns the
    network input (float32, NaN replaced by 0, i.e. the band mean) and :func:`valid_pixels` of
    ``physical``.
    """
    ndim = 5 if spec.layout == TensorLayout.NTCHW else 3
    if physical.ndim != ndim or physical.shape[2] != len(spec.bands):
        dims = "(batch, time, {}, H, W)" if ndim == 5 else "(batch, time, {})"
        raise ValueError(
            f"input '{spec.tensor}' needs {dims.format(len(spec.bands))} values, got {physical.shape}"
        )
    physical = mask_implausible(physical, [b.unit for b in spec.bands])
    valid = valid_pixels(physical)
    x = scale(physical, spec).astype(np.float32, copy=False)
    x[~np.isfinite(x)] = 0.0  # as nan_to_num(nan=0, posinf=0, neginf=0), in one pass
    return x, valid


def prepare(raw: np.ndarray, encodings: Sequence[Encoding], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (batch, time, bands) -> (network input, valid mask)."""
    return standardize(to_physical(raw, encodings), spec)
