"""rasterio and QGIS's own GDAL bindings (the fallback where rasterio is absent) behind raster_io:
the same predictions and the same files from the real cube, and the whole engine suite on GDAL."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from osgeo import gdal

from eo_missing_qgis.core import raster_io
from eo_missing_qgis.core.engine import run_model
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import cube_path, variable

from .conftest import ROOT

BUNDLED = ROOT / "eo_missing_qgis" / "models"


def _predict(backend: str, monkeypatch, data_dir, out) -> str:
    module = raster_io._gdal_backend() if backend == "gdal" else raster_io._import_rasterio()
    monkeypatch.setattr(raster_io, "_rasterio", module)
    result = run_model(BUNDLED / "crop_type_europe_s1_s2.onnx", [RasterInput(cube_path(data_dir))], out)
    return result.outputs["prediction"]


def _read(path: str) -> dict:
    with rasterio.open(path) as ds:
        return {"data": ds.read(), "crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata,
                "dtype": ds.dtypes[0], "colormap": ds.colormap(1), "tags": ds.tags(),
                "band_tags": ds.tags(1), "descriptions": ds.descriptions}


def test_bundled_model_gives_the_same_file_on_both_backends(monkeypatch, data_dir, tmp_path):
    for backend in ("rio", "gdal"):  # one file name in two folders: a tag names the prediction file
        (tmp_path / backend).mkdir()
    with_rasterio = _read(_predict("rasterio", monkeypatch, data_dir, tmp_path / "rio" / "crop.tif"))
    with_gdal = _read(_predict("gdal", monkeypatch, data_dir, tmp_path / "gdal" / "crop.tif"))
    assert raster_io.rasterio_module().__name__.endswith("gdal_backend")
    # The same input pixels reach the same network in the same process: the classes are identical.
    np.testing.assert_array_equal(with_gdal.pop("data"), with_rasterio.pop("data"))
    assert with_gdal == with_rasterio  # georeferencing, nodata, colours, class names, descriptions
    assert with_gdal["colormap"][1][:3] != (0, 0, 0) and "CLASS_NAMES" in with_gdal["tags"]


def test_reprojected_input_is_resampled_alike(monkeypatch, data_dir, tmp_path):
    """A band in EPSG:4326 read on the cube's UTM grid: both backends warp only the window."""
    wgs84 = str(tmp_path / "b04_wgs84.tif")
    gdal.Warp(wgs84, variable(data_dir, "S2-L2A-B04"), dstSRS="EPSG:4326", format="GTiff")
    reads = {}
    for backend in ("rasterio", "gdal"):
        module = raster_io._gdal_backend() if backend == "gdal" else raster_io._import_rasterio()
        monkeypatch.setattr(raster_io, "_rasterio", module)
        grid = raster_io.read_header(variable(data_dir, "S2-L2A-B04")).grid
        source = raster_io.Source(raster_io.read_header(wgs84), grid)
        assert source.warped
        reads[backend] = source.read([1, 6], raster_io.Window(row=16, col=8, height=48, width=64))
        source.close()
    (rio_data, rio_missing), (gdal_data, gdal_missing) = reads["rasterio"], reads["gdal"]
    assert rio_data.shape == gdal_data.shape == (2, 48, 64)
    # Two GDAL builds (rasterio's own, QGIS's) may pick the neighbouring source pixel at a few
    # pixel-centre ties; anything beyond 2% would be a misplaced grid, not rounding.
    valid = ~rio_missing & ~gdal_missing
    assert valid.mean() > 0.9 and (rio_missing != gdal_missing).mean() < 0.02
    assert (rio_data[valid] == gdal_data[valid]).mean() > 0.98


@pytest.mark.slow
def test_engine_suite_passes_on_qgis_gdal(data_dir):
    """Every engine test again with EO_MISSING_RASTER_BACKEND=gdal (inputs, tiling, spatial, errors)."""
    tests = sorted(str(p) for p in (ROOT / "tests").glob("test_engine_*.py"))
    env = {**os.environ, "EO_MISSING_RASTER_BACKEND": "gdal", "EO_MISSING_DATA_DIR": str(data_dir)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
