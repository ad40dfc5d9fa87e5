"""WorldCereal's ``old_training_patches``: 64 x 64 px locations with parcel ground truth.

Each location folder holds irregular, dense time series (netCDF, read with GDAL's multidimensional
API): ``S2_L2A_10m`` (B02, B03, B04, B08), ``S2_L2A_20m`` (B05-B07, B8A, B11, B12 and the scene
classification ``SCL``), ``S1_GRD-ASCENDING_20m`` (VV/VH in dB x 10000), ``AgERA5_DAILY_1000m``
(daily K and mm) and ``OUTPUT_POLY-110_10m``: the ``LC`` (land cover) and ``CT`` (crop type)
rasters rasterised from parcel declarations, in WorldCereal's legacy legend (0 = no information).

A patch becomes per-pixel monthly series on the 10 m grid like the parquet extractions: each
month is the median of the valid acquisitions in it (S2: SCL vegetation, bare soil, water or
unclassified, i.e. clouds, shadows and snow dropped; S1/S2: nodata 0 dropped), 20 m pixels are
repeated on the 10 m grid, weather is the monthly mean temperature and precipitation total, and a
missing input file (one location lacks S2 10 m) leaves its bands NaN. There is no DEM file: DEM is
NaN. Months: the 12 months November .. October of the season named in the file (its end date's
year), else the 12 full months before the end date (the Tanzania patch ends in September).

Pixels of a parcel are not independent samples: :func:`parcels` labels connected components of one
(LC, CT) value, and :func:`sample_parcels` keeps at most ``cap`` pixels of each. Only
:func:`interior` pixels are sampled: a boundary pixel mixes two parcels (and a 20 m pixel spans it).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from osgeo import gdal, osr
from scipy import ndimage

from eo_missing_qgis.core.definitions import BANDS, MODALITIES
from eo_missing_qgis.core.preprocessing import to_physical
from eo_missing_qgis.core.units import Encoding

gdal.UseExceptions()

STEPS = 12
SIZE = 64
#: Scene classification values kept (4 vegetation, 5 bare soil, 6 water, 7 unclassified).
SCL_CLEAR = (4, 5, 6, 7)
DN_10000 = Encoding(scale=1e-4, nodata=0)
_TIME_UNITS = {"days": "D", "hours": "h", "seconds": "s"}
_NAME = re.compile(r"_(\d{5})_(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})\.nc$")


@dataclass
class Patch:
    """One location's pixels (row-major, SIZE * SIZE) as monthly physical values and labels."""

    location: str
    physical: dict[str, np.ndarray]
    lc: np.ndarray
    ct: np.ndarray
    parcel: np.ndarray
    interior: np.ndarray
    latlon: np.ndarray
    months: np.ndarray


def _read(path: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex]:
    """Variables (time, y, x) as stored, and the acquisition dates."""
    group = gdal.OpenEx(str(path), gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    stamp = group.OpenMDArray("timestamp")
    unit, origin = stamp.GetUnit().split(" since ")
    if unit not in _TIME_UNITS:
        raise ValueError(f"{path.name}: time unit {unit!r} is not one of {', '.join(_TIME_UNITS)}")
    offsets = pd.to_timedelta(stamp.ReadAsArray().astype(np.int64), unit=_TIME_UNITS[unit])
    dates = pd.Timestamp(origin) + offsets
    return {n: group.OpenMDArray(n).ReadAsArray() for n in names}, pd.DatetimeIndex(dates)


def _monthly(values: np.ndarray, dates: pd.DatetimeIndex, months: pd.DatetimeIndex, how) -> np.ndarray:
    """(12, ...) per-month reduction (NaN-aware ``how``) of (time, ...) values; NaN without data."""
    out = np.full((len(months), *values.shape[1:]), np.nan, np.float32)
    period = dates.to_period("M")
    for i, m in enumerate(months.to_period("M")):
        sel = period == m
        if sel.any() and np.isfinite(values[sel]).any():
            with warnings.catch_warnings():  # pixels without a valid value this month stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                out[i] = how(values[sel], axis=0)
    return out


def _to_10m(values: np.ndarray) -> np.ndarray:
    """(time, 32, 32) 20 m values repeated on the (time, 64, 64) 10 m grid."""
    return values if values.shape[-1] == SIZE else values.repeat(2, axis=-2).repeat(2, axis=-1)


def season_months(end: pd.Timestamp) -> pd.DatetimeIndex:
    """November .. October of the end date's year when the file covers October, else the 12 full
    months before the end date."""
    if end >= pd.Timestamp(end.year, 10, 31):
        last = pd.Timestamp(end.year, 10, 1)
    else:  # the month before the one after the end date (the end month when it is complete)
        last = (end + pd.Timedelta(days=1)).to_period("M").to_timestamp() - pd.DateOffset(months=1)
    return pd.date_range(end=last, periods=STEPS, freq="MS")


def _optical(folder: Path, months: pd.DatetimeIndex) -> np.ndarray:
    """(12, bands, 64, 64) S2 reflectance, monthly medians of clear acquisitions."""
    bands_20 = tuple(b for b in BANDS["S2"] if b not in ("B02", "B03", "B04", "B08"))
    raw20, dates = _read(next(folder.glob("S2_L2A_20m_*.nc")), (*bands_20, "SCL"))
    clear = np.isin(_to_10m(raw20.pop("SCL")), SCL_CLEAR)
    stored = {b: _to_10m(v) for b, v in raw20.items()}
    ten = list(folder.glob("S2_L2A_10m_*.nc"))
    if ten:
        raw10, dates10 = _read(ten[0], ("B02", "B03", "B04", "B08"))
        if not dates10.equals(dates):
            raise ValueError(f"{folder.name}: S2 10 m and 20 m dates differ")
        stored.update(raw10)
    out = np.full((STEPS, len(BANDS["S2"]), SIZE, SIZE), np.nan, np.float32)
    for c, band in enumerate(BANDS["S2"]):
        if band in stored:
            phys = to_physical(stored[band][..., None], [DN_10000])[..., 0]
            phys[~clear] = np.nan
            out[:, c] = _monthly(phys, dates, months, np.nanmedian)
    return out


def _radar(folder: Path, months: pd.DatetimeIndex) -> np.ndarray:
    """(12, 2, 64, 64) S1 backscatter (dB), monthly medians."""
    raw, dates = _read(next(folder.glob("S1_GRD-ASCENDING_20m_*.nc")), BANDS["S1"])
    return np.stack([
        _monthly(to_physical(_to_10m(raw[b])[..., None], [DN_10000])[..., 0], dates, months, np.nanmedian)
        for b in BANDS["S1"]
    ], axis=1)


def _weather(folder: Path, months: pd.DatetimeIndex) -> np.ndarray:
    """(12, 2) monthly mean temperature (K) and precipitation total (mm) of the location."""
    names = ("temperature_mean", "precipitation_flux")
    raw, dates = _read(next(folder.glob("AgERA5_DAILY_1000m_*.nc")), names)
    daily = {k: np.where(v == -9999, np.nan, v).reshape(len(dates)) for k, v in raw.items()}
    return np.stack([_monthly(daily["temperature_mean"], dates, months, np.nanmean),
                     _monthly(daily["precipitation_flux"], dates, months, np.nansum)], axis=1)


def _latlon(truth: Path) -> np.ndarray:
    """(64 * 64, 2) latitude and longitude of the pixel centres (the file's UTM zone)."""
    group = gdal.OpenEx(str(truth), gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    x, y = (group.OpenMDArray(n).ReadAsArray().astype(np.float64) for n in ("x", "y"))
    xx, yy = np.meshgrid(x, y)
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(int(_NAME.search(truth.name).group(1)))
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    points = osr.CoordinateTransformation(src, dst).TransformPoints(np.c_[xx.ravel(), yy.ravel()])
    return np.asarray(points)[:, [1, 0]]


def parcels(lc: np.ndarray, ct: np.ndarray) -> np.ndarray:
    """(64, 64) parcel ids: 4-connected components of one (LC, CT) value, 0 where LC and CT are 0."""
    key = lc.astype(np.int64) * 100_000 + ct
    out = np.zeros(key.shape, np.int64)
    for value in np.unique(key[key > 0]):
        labels, _ = ndimage.label(key == value)
        out[labels > 0] = labels[labels > 0] + out.max()
    return out


def interior(parcel: np.ndarray) -> np.ndarray:
    """(64, 64) pixels whose 8 neighbours lie in their parcel: no mixed pixel at a boundary, and
    the 20 m pixel repeated there lies inside the parcel too."""
    same = np.ones(parcel.shape, bool)
    padded = np.pad(parcel, 1, constant_values=-1)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            same &= padded[1 + dr:1 + dr + parcel.shape[0], 1 + dc:1 + dc + parcel.shape[1]] == parcel
    return same & (parcel > 0)


def read_patch(folder: Path) -> Patch:
    """One location of ``old_training_patches`` as monthly per-pixel values on the 10 m grid."""
    truth = next(folder.glob("OUTPUT_POLY-110_10m_*.nc"))
    months = season_months(pd.Timestamp(_NAME.search(truth.name).group(3)))
    labels = gdal.OpenEx(str(truth), gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    lc, ct = (labels.OpenMDArray(n).ReadAsArray().astype(np.int64) for n in ("LC", "CT"))
    n = SIZE * SIZE
    parcel = parcels(lc, ct)
    per_pixel = {"S2": _optical(folder, months), "S1": _radar(folder, months)}
    physical = {m: v.transpose(2, 3, 0, 1).reshape(n, STEPS, -1) for m, v in per_pixel.items()}
    physical["weather"] = np.repeat(_weather(folder, months)[None], n, axis=0)
    physical["DEM"] = np.full((n, STEPS, len(BANDS["DEM"])), np.nan, np.float32)
    return Patch(
        location=folder.name,
        physical={m: physical[m] for m in MODALITIES},
        lc=lc.ravel(),
        ct=ct.ravel(),
        parcel=parcel.ravel(),
        interior=interior(parcel).ravel(),
        latlon=_latlon(truth),
        months=np.repeat(months.month.to_numpy()[None], n, axis=0),
    )


def sample_parcels(parcel: np.ndarray, keep: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices of at most ``cap`` random pixels of each parcel among the ``keep`` pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for p in np.unique(parcel[keep]):
        members = np.flatnonzero(keep & (parcel == p))
        out.append(np.sort(rng.choice(members, min(cap, len(members)), replace=False)))
    return np.concatenate(out) if out else np.zeros(0, np.int64)
