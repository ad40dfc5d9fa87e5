"""Context inputs encoded once (card schema 1.2): the engine and training both call these, so a
model sees in QGIS exactly the numbers it was trained on (:class:`.definitions.ContextEncoding`).

Pure numpy, any leading shape: the engine passes (time, bands, height, width) blocks and flat
pixel vectors, training passes (samples, time, bands) series.
"""

from __future__ import annotations

import numpy as np

from .definitions import ContextEncoding


def step_available(physical: np.ndarray, band_axis: int) -> np.ndarray:
    """Whether every band of a modality has a value (is finite) at each step: the mask input,
    derived from the NaNs of the physical values and nothing else, so a month dropped by setting
    its values to NaN is flagged missing as the engine flags it."""
    return np.isfinite(physical).all(axis=band_axis)


def encode_month(months: np.ndarray, encoding: ContextEncoding) -> np.ndarray:
    """Calendar months 1-12 (any shape) as float32: ``index`` month - 1 (same shape), ``sin_cos``
    sin and cos of 2 pi (month - 1) / 12 on a new last axis of 2."""
    m = np.asarray(months, dtype=np.float64) - 1
    if encoding == ContextEncoding.SIN_COS:
        m = np.stack([np.sin(2 * np.pi * m / 12), np.cos(2 * np.pi * m / 12)], axis=-1)
    elif encoding != ContextEncoding.INDEX:
        raise ValueError(f"{encoding!r} is not a month encoding")
    return m.astype(np.float32)


def encode_latlon(lat: np.ndarray, lon: np.ndarray, encoding: ContextEncoding) -> np.ndarray:
    """Latitude and longitude (degrees, WGS 84, shape (n,)) as float32 (n, 2) ``degrees`` or
    (n, 3) ``lat_sin_cos_lon`` (latitude / 90, sin and cos of the longitude: no seam at 180)."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if encoding == ContextEncoding.DEGREES:
        columns = [lat, lon]
    elif encoding == ContextEncoding.LAT_SIN_COS_LON:
        columns = [lat / 90, np.sin(np.radians(lon)), np.cos(np.radians(lon))]
    else:
        raise ValueError(f"{encoding!r} is not a latitude/longitude encoding")
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)
