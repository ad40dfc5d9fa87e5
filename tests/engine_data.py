"""Rasters for the engine tests, cut from the real WorldCereal cube (or tiny generated grids for
error paths), written as GeoTIFFs in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tests.tiny_models import S1_BANDS, S2_BANDS

CUBE = "worldcereal/worldcereal_preprocessed_inputs.nc"
CUBE_TRANSFORM = Affine(10, 0, 664000, 0, -10, 5612120)
S2_VARS = {b: f"S2-L2A-{b}" for b in S2_BANDS}
S1_VARS = {b: f"S1-SIGMA0-{b}" for b in S1_BANDS}


def cube_path(data_dir: Path) -> str:
    return str(data_dir / CUBE)


def variable(data_dir: Path, name: str) -> str:
    return f'NETCDF:"{data_dir / CUBE}":{name}'


def read_variable(data_dir: Path, name: str) -> tuple[np.ndarray, dict]:
    """(time, rows, cols) values and the grid (crs, transform) of one cube variable."""
    with rasterio.open(variable(data_dir, name)) as ds:
        return ds.read(), {"crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata}


def write_tif(path: Path, data: np.ndarray, crs=None, transform=None, nodata=None,
              descriptions: list[str] | None = None) -> str:
    data = data if data.ndim == 3 else data[None]
    crs = crs if crs is not None else CRS.from_epsg(32631)
    transform = transform if transform is not None else CUBE_TRANSFORM
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as ds:
        ds.write(data)
        for k, d in enumerate(descriptions or []):
            ds.set_band_description(k + 1, d)
    return str(path)


def s2_stack(data_dir: Path) -> np.ndarray:
    """The cube's S2 values as (time, band, rows, cols) uint16, bands in S2_BANDS order."""
    return np.stack([read_variable(data_dir, S2_VARS[b])[0] for b in S2_BANDS], axis=1)


class CancelAfter:
    """A cancel callable that says "cancel" from its ``n``-th check on, i.e. in the middle of a run."""

    def __init__(self, n: int):
        self.n, self.checks = n, 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks >= self.n
