"""An Earth-Engine / CropHarvest-style multi-sensor stack cut from the real WorldCereal cube:
per month ``VV, VH`` (dB), ``B1 ... B12`` with B8A (float reflectance x 10000),
``temperature_2m`` (K), ``total_precipitation`` (m), then static ``elevation, slope``; float32,
NaN nodata, EPSG:4326 (12 x 17 + 2 = 206 raster bands)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from tests.engine_data import read_variable, write_tif

S2_EE = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
#: The cube variable each Earth Engine S2 band is read from (B1, B8A, B9, B10 are not in the cube:
#: spectral neighbours stand in; no bundled model reads them).
_S2_FROM = {"B1": "B02", "B8A": "B08", "B9": "B08", "B10": "B12"}
MONTHLY = ("VV", "VH", *S2_EE, "temperature_2m", "total_precipitation")
STATIC = ("elevation", "slope")
#: About 10 m pixels in degrees from the cube's top-left corner (Belgium): the bundled models take
#: each pixel's latitude/longitude, so the stack must lie where the cube lies to give its map.
EE_TRANSFORM = Affine(0.00014, 0, 5.3193, 0, -0.00009, 50.6378)


def _physical(data_dir: Path, name: str) -> np.ndarray:
    """One monthly band as Earth Engine exports it, (12, rows, cols) float32 with NaN nodata."""
    if name in ("VV", "VH"):
        values, grid = read_variable(data_dir, f"S1-SIGMA0-{name}")
        with np.errstate(divide="ignore"):
            out = 20 * np.log10(values.astype(np.float64)) - 83
    elif name in S2_EE:
        values, grid = read_variable(data_dir, f"S2-L2A-{_S2_FROM.get(name, 'B' + name[1:].zfill(2))}")
        out = values.astype(np.float64)
    elif name == "temperature_2m":
        values, grid = read_variable(data_dir, "AGERA5-TMEAN")
        out = values / 100.0
    else:
        values, grid = read_variable(data_dir, "AGERA5-PRECIP")
        out = values / 100.0 / 1000.0
    out[values == grid["nodata"]] = np.nan
    return out.astype(np.float32)


def ee_stack(data_dir: Path, path: Path, months: int = 12) -> str:
    """Write the stack (``months`` latest months of the cube) and return its path."""
    monthly = {name: _physical(data_dir, name)[-months:] for name in MONTHLY}
    static = [read_variable(data_dir, name)[0][0].astype(np.float32) for name in STATIC]
    bands = [monthly[name][t] for t in range(months) for name in MONTHLY] + static
    descriptions = [name for _ in range(months) for name in MONTHLY] + list(STATIC)
    return write_tif(path, np.stack(bands), crs=CRS.from_epsg(4326), transform=EE_TRANSFORM,
                     nodata=np.nan, descriptions=descriptions)
