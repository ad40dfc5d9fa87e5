"""Card-driven preprocessing, shared by training and inference.

Stored values (any encoding) -> physical units (:mod:`.units`) -> the card's standardisation ->
float32 tensors in the card's layout (batch, time, bands[, H, W]). Training builds its tensors with
these functions and QGIS inference calls the same ones, so a model sees the same numbers in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .model_card import InputSpec
from .units import Encoding


def to_physical(raw: np.ndarray, encodings: Sequence[Encoding]) -> np.ndarray:
    """Decode ``raw`` (..., bands) band by band; missing values become NaN."""
    raw = np.asarray(raw)
    if raw.shape[-1] != len(encodings):
        raise ValueError(f"{raw.shape[-1]} bands given but {len(encodings)} encodings")
    out = np.empty(raw.shape, dtype=np.float32)
    for c, enc in enumerate(encodings):
        out[..., c] = enc.to_physical(raw[..., c])
    return out


def band_statistics(physical: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band mean and std over every sample and time step (NaN ignored), for a card's scaling."""
    flat = physical.reshape(-1, physical.shape[-1]).astype(np.float64)
    mean = np.nanmean(flat, axis=0)
    std = np.nanstd(flat, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
    return [float(m) for m in mean], [float(s) for s in std]


def standardize(physical: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Scale physical values (batch, time, bands), or (batch, time, bands, H, W) for a spatial
    card, as the card says.

    Returns the network input (float32, NaN replaced by 0, i.e. the band mean) and a boolean
    ``valid`` that is False where any value of the sample was missing: (batch,) per pixel, or
    (batch, H, W) for spatial inputs (a pixel is the sample there).
    """
    ndim = 5 if spec.layout == "NTCHW" else 3
    if physical.ndim != ndim or physical.shape[2] != len(spec.bands):
        dims = "(batch, time, {}, H, W)" if ndim == 5 else "(batch, time, {})"
        raise ValueError(
            f"input '{spec.tensor}' needs {dims.format(len(spec.bands))} values, got {physical.shape}"
        )
    valid = np.isfinite(physical).all(axis=(1, 2))
    x = spec.standardize(physical).astype(np.float32, copy=False)
    x[~np.isfinite(x)] = 0.0  # as nan_to_num(nan=0, posinf=0, neginf=0), in one pass
    return x, valid


def prepare(raw: np.ndarray, encodings: Sequence[Encoding], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (batch, time, bands) -> (network input, valid mask)."""
    return standardize(to_physical(raw, encodings), spec)
