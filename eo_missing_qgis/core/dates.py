"""A layer's acquisition date(s) from what the data carry, and the processing level it says.

Most analysts load single scenes whose date is in the product metadata or the Sentinel file
name; reading it here lets a one-date layer be placed on a model's months without the user typing
it (issue 10). Sources, most specific first: GDAL metadata keys written by the Sentinel and
Landsat drivers, a netCDF time coordinate (``NETCDF_DIM_t_VALUES``: one date per band of a
multi-step variable, so its months come from the data, not from band order; or a band's
``NETCDF_DIM_t``; both with ``t#units``), the
Sentinel product or tile name (bands of one scene in 10/20/60 m files share it), then band
descriptions that hold a date. Dates given by the user always win (:func:`.raster_inputs.layer_dates`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

#: Metadata keys holding an acquisition date, most specific first. ``TIFFTAG_DATETIME`` comes last:
#: many writers put the file's creation time there.
DATE_KEYS = ("DATATAKE_1_DATATAKE_SENSING_START", "SENSING_TIME", "ACQUISITION_DATE", "DATE_ACQUIRED",
             "PRODUCT_START_TIME", "SENSING_START", "TIFFTAG_DATETIME")

_YMD = re.compile(r"(?<!\d)(\d{4})[-:]?(\d{2})[-:]?(\d{2})(?!\d)")
# S2A_MSIL2A_20210612T104021_..., T31UFS_20210612T104021_B04_10m.jp2, S1A_IW_GRDH_1SDV_20210612T...
_SENTINEL = re.compile(r"(?:^|[_\W])(?:S[12][A-D]_\w*?|T\d{2}[A-Z]{3})_(\d{8})T\d{6}")
_NC_UNITS = re.compile(r"^\s*(days|hours|minutes|seconds)\s+since\s+(\d{4}-\d{1,2}-\d{1,2})")
_L1C = re.compile(r"MSIL1C|(?:^|_)L1C(?:_|$)")


def _iso(text: str) -> str | None:
    """``YYYY-MM-DD`` of the first plausible date in ``text``, else None."""
    m = _YMD.search(text)
    if not m or not (1900 < int(m.group(1)) < 2200 and 1 <= int(m.group(2)) <= 12
                     and 1 <= int(m.group(3)) <= 31):
        return None
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}"


def netcdf_date(value: str, units: str) -> str | None:
    """The date of a CF time coordinate ``value`` in ``units`` (e.g. ``days since 1970-01-01``)."""
    m = _NC_UNITS.match(units or "")
    if not m:
        return None
    try:
        when = datetime.strptime(m.group(2), "%Y-%m-%d") + timedelta(**{m.group(1): float(value)})
    except (ValueError, OverflowError):
        return None
    return when.strftime("%Y-%m-%d")


def netcdf_time(metadata: Mapping[str, str]) -> str | None:
    """The date of a netCDF band from its time coordinate: GDAL's ``NETCDF_DIM_<dim>`` band item
    whose ``<dim>#units`` read ``<unit> since <date>`` (the dimension is ``time`` or ``t``...)."""
    for key, value in metadata.items():
        if key.startswith("NETCDF_DIM_"):
            date = netcdf_date(value, metadata.get(f"{key[len('NETCDF_DIM_'):]}#units", ""))
            if date:
                return date
    return None


def netcdf_band_dates(metadata: Mapping[str, str]) -> list[str] | None:
    """One date per raster band of a netCDF variable with one band per time step: GDAL lists the
    variable's extra dimension in ``NETCDF_DIM_EXTRA`` (e.g. ``{t}``) and its coordinate values in
    ``NETCDF_DIM_<dim>_VALUES``, with ``<dim>#units`` ``<unit> since <date>``. None when the variable
    has another extra dimension too (its bands are then not one per date) or the units say no date.
    """
    extra = metadata.get("NETCDF_DIM_EXTRA", "").strip("{} ").split(",")
    if len(extra) != 1 or not extra[0]:
        return None
    dim = extra[0].strip()
    values = metadata.get(f"NETCDF_DIM_{dim}_VALUES", "").strip("{} ").split(",")
    dates = [netcdf_date(v, metadata.get(f"{dim}#units", "")) for v in values if v.strip()]
    return dates if dates and all(dates) else None  # type: ignore[return-value]


def name_date(path: str) -> str | None:
    """The sensing date in a Sentinel product or tile file name (or any folder of its path)."""
    m = _SENTINEL.search(Path(path).as_posix())
    return _iso(m.group(1)) if m else None


def description_dates(descriptions: tuple[str, ...] | list[str]) -> list[str] | None:
    """Dates held by band descriptions: one when all name the same date, one per raster band when
    every description is a date (a one-band layer's time series), else None."""
    found = [_iso(d or "") for d in descriptions]
    if not found or any(f is None for f in found):
        return None
    distinct = sorted(set(found), key=found.index)
    if len(distinct) == 1:
        return distinct  # type: ignore[return-value]
    return found if all(_YMD.fullmatch(d.strip()) for d in descriptions) else None  # type: ignore[return-value]


def recognised_dates(path: str, metadata: Mapping[str, str],
                     descriptions: tuple[str, ...]) -> list[str] | None:
    """A layer's date(s) as ``YYYY-MM-DD`` from its metadata, netCDF time (one per band of a
    multi-step variable), file name or band descriptions; None when it carries none."""
    for key in DATE_KEYS:
        date = _iso(str(metadata.get(key, "")))
        if date:
            return [date]
    date = netcdf_time(metadata)
    dates = netcdf_band_dates(metadata) or ([date] if date else None)
    if dates:
        return dates
    date = name_date(path)
    if date:
        return [date]
    return description_dates(descriptions)


def l1c_reason(path: str, metadata: Mapping[str, str]) -> str | None:
    """Why a layer is top-of-atmosphere Sentinel-2 Level-1C, None when nothing says so."""
    level = str(metadata.get("PROCESSING_LEVEL", "")).replace(" ", "").upper()
    if level in ("LEVEL-1C", "L1C"):
        return f"its metadata say PROCESSING_LEVEL={metadata['PROCESSING_LEVEL']}"
    if _L1C.search(Path(path).name.upper()):
        return "its file name says it is a Level-1C (MSIL1C) product"
    return None
