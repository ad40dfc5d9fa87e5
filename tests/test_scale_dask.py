"""Dask: predict over a 2000 x 2000 mosaic of the real WorldCereal cube (20 x 20 copies) on a
LocalCluster of two worker processes, equal to the local engine on the same mosaic read as VRTs.

The spatial tiny model (receptive radius 2 px, halo 2) runs over the whole mosaic, so chunk seams
of Dask and tile seams of the engine both lie inside its context. A bundled model runs at
~26 000 px/s per core here, so it is checked on a 300 x 300 corner of the mosaic.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from scripts.bench_inference import mosaic
from tests.engine_data import CUBE_TRANSFORM, S2_VARS, cube_path, read_variable
from tests.test_engine_spatial import spatial_card, spatial_onnx
from tests.tolerances import RUNTIME_RTOL, assert_same_classes

distributed = pytest.importorskip("distributed")
xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
rioxarray = pytest.importorskip("rioxarray")

SIZE = 2000
BUNDLED = "eo_missing_qgis/models/crop_type_europe_s2.onnx"


def mosaic_dataset(data_dir, copies: int) -> xr.Dataset:
    """The cube's S2 variables tiled ``copies`` x ``copies`` lazily (one 100² copy in memory each),
    stored values (uint16 DN, nodata 65535) as xarray opens them with mask_and_scale=False."""
    n = 100 * copies
    x = CUBE_TRANSFORM.c + CUBE_TRANSFORM.a * (np.arange(n) + 0.5)
    y = CUBE_TRANSFORM.f + CUBE_TRANSFORM.e * (np.arange(n) + 0.5)
    variables = {}
    for name in S2_VARS.values():
        values, meta = read_variable(data_dir, name)
        # Chunks of 5 x 5 copies, so a 500 px chunking needs no rechunk between workers.
        block = 5 if copies % 5 == 0 else 1
        values = np.tile(values, (1, block, block))
        tiled = da.tile(da.from_array(values, chunks=-1), (1, copies // block, copies // block))
        variables[name] = xr.DataArray(tiled, dims=("t", "y", "x"), attrs={"_FillValue": meta["nodata"]})
    return xr.Dataset(variables, coords={"x": x, "y": y}).rio.write_crs("EPSG:32631")


def test_without_a_cluster_on_the_cube_opened_by_rioxarray(tmp_path, data_dir):
    """Dask's own threads (no distributed client: this test runs before the module's cluster
    starts) on the netCDF cube as rioxarray opens it, chunks of 64 px."""
    from eo_missing_qgis.core.scale.dask_predict import predict

    cube = rioxarray.open_rasterio(cube_path(data_dir), chunks=True, mask_and_scale=False,
                                   decode_times=False)
    paths = predict(cube, BUNDLED, tmp_path / "dask.tif", probabilities=True, chunk=64)
    local = run_model(BUNDLED, [RasterInput(cube_path(data_dir))], tmp_path / "local.tif",
                      options=RunOptions(write_probabilities=True))
    expected_probs = read(local.outputs["probabilities"])[0]
    np.testing.assert_allclose(read(paths["probabilities"])[0], expected_probs, atol=2e-5)
    assert_same_classes(read(paths["prediction"])[0][0], read(local.outputs["prediction"])[0][0],
                        expected_probs)


def test_a_wrong_encoding_is_warned_about(tmp_path, data_dir):
    """DN declared as reflectance 0-1: the workers cannot warn, the caller checks the first chunk."""
    from eo_missing_qgis.core.scale.dask_predict import predict

    cube = rioxarray.open_rasterio(cube_path(data_dir), chunks=True, mask_and_scale=False,
                                   decode_times=False)
    with pytest.warns(UserWarning, match="S2 B02 .* look like reflectance x 10000, not 0-1"):
        predict(cube, BUNDLED, tmp_path / "dask.tif", encodings={"S2": "reflectance (0-1)"})


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def vrts(tmp_path_factory, data_dir) -> list[RasterInput]:
    """The same mosaic as GDAL VRTs for the local engine (one per band, time steps as bands)."""
    d = tmp_path_factory.mktemp("mosaic")
    return [RasterInput(mosaic(d, data_dir, b, SIZE)) for b in S2_VARS]


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


def test_spatial_model_on_the_2000_mosaic_equals_the_engine(tmp_path, data_dir, client, vrts):
    from eo_missing_qgis.core.scale.dask_predict import predict

    model = spatial_onnx(tmp_path / "s2.onnx", spatial_card(modalities=("S2",)))
    local = run_model(model, vrts, tmp_path / "local.tif",
                      options=RunOptions(write_probabilities=True, threads=2))
    logs: list[str] = []
    paths = predict(mosaic_dataset(data_dir, SIZE // 100), model, tmp_path / "dask.tif",
                    probabilities=True, chunk=250, log=logs.append)
    assert "8 x 8 chunks of up to 250 px, overlap 2 px" in logs[0]
    assert set(paths) == {"prediction", "confidence", "probabilities"}
    probs, profile = read(paths["probabilities"])
    expected_probs, expected_profile = read(local.outputs["probabilities"])
    assert probs.shape == (3, SIZE, SIZE) and profile["transform"] == expected_profile["transform"]
    assert profile["crs"] == expected_profile["crs"] and profile["tiled"]
    np.testing.assert_allclose(probs, expected_probs, atol=2e-5)
    cls, expected_cls = read(paths["prediction"])[0][0], read(local.outputs["prediction"])[0][0]
    assert_same_classes(cls, expected_cls, expected_probs)
    assert (cls == 0).sum() == local.pixels_nodata
    np.testing.assert_allclose(read(paths["confidence"])[0], read(local.outputs["confidence"])[0],
                               atol=2e-5)
    with rasterio.open(paths["prediction"]) as ds:  # the engine's legend, for any GIS
        assert ds.colormap(1)[1][:3] == (0xe6, 0xc2, 0x29) and ds.tags(1)["CLASS_1"] == "cereals"


def test_bundled_model_equals_the_engine(tmp_path, data_dir, client):
    """A per-pixel model taking the month and each pixel's latitude/longitude: on the mosaic's
    300 x 300 corner, the engine's map of the same 300² mosaic (the copies of the cube lie at other
    places, so their maps differ; chunks of 150 px place each chunk's pixels on the grid)."""
    from eo_missing_qgis.core.scale.dask_predict import predict

    vrts = [RasterInput(mosaic(tmp_path, data_dir, b, 300)) for b in S2_VARS]
    local = run_model(BUNDLED, vrts, tmp_path / "local.tif", options=RunOptions(write_probabilities=True))
    data = mosaic_dataset(data_dir, SIZE // 100).isel(x=slice(0, 300), y=slice(0, 300))
    paths = predict(data, BUNDLED, tmp_path / "dask.tif", probabilities=True, chunk=150)
    expected_probs = read(local.outputs["probabilities"])[0]
    np.testing.assert_allclose(read(paths["probabilities"])[0], expected_probs, atol=2e-5)
    assert_same_classes(read(paths["prediction"])[0][0], read(local.outputs["prediction"])[0][0],
                        expected_probs)


def test_the_month_comes_from_the_dataset_dates(tmp_path, data_dir):
    """LFMC (relative time axis: no first month) on the cube's latest 3 months, dated by the
    dataset's time coordinate: the engine's map of the cube (its netCDF dates, the latest 3 months)."""
    from eo_missing_qgis.core.scale.dask_predict import predict

    model = "eo_missing_qgis/models/lfmc_s2.onnx"
    local = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "local.tif")
    data = mosaic_dataset(data_dir, 1).isel(t=slice(9, 12))
    dated = data.assign_coords(t=np.array(["2021-08-01", "2021-09-01", "2021-10-01"], dtype="datetime64[ns]"))
    paths = predict(dated, model, tmp_path / "dask.tif", chunk=64)
    np.testing.assert_allclose(read(paths["prediction"])[0], read(local.outputs["prediction"])[0],
                               rtol=RUNTIME_RTOL)
    with pytest.raises(InputError, match="takes the calendar month of each time step: give the dataset a "
                                         r"time coordinate \('t'\) of dates"):
        predict(data, model, tmp_path / "undated.tif")
    gap = data.assign_coords(t=np.array(["2021-07-01", "2021-09-01", "2021-10-01"], dtype="datetime64[ns]"))
    with pytest.raises(InputError, match=r"dates \(2021-07, 2021-09, 2021-10\) are not 3 consecutive months "
                                         "from 2021-08, as model lfmc_s2 takes them"):
        predict(gap, model, tmp_path / "gap.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.tif", "local.tif"]


def test_missing_band_is_refused_before_any_file(tmp_path, data_dir):
    from eo_missing_qgis.core.scale.dask_predict import predict

    data = mosaic_dataset(data_dir, 1).drop_vars("S2-L2A-B11")
    with pytest.raises(InputError, match=r"lack bands .*S2 B11"):
        predict(data, BUNDLED, tmp_path / "x.tif")
    assert list(tmp_path.iterdir()) == []


def test_scale_modules_import_without_dask_xarray_or_openeo():
    """The wrappers import their frameworks lazily and say what to install."""
    code = ("import sys\n"
            "for m in ('dask', 'dask.array', 'distributed', 'xarray', 'rioxarray', 'openeo'):\n"
            "    sys.modules[m] = None\n"
            "from eo_missing_qgis.core.scale import dask_predict, openeo_graph\n"
            "from eo_missing_qgis.core import cli\n"
            "cli.build_parser()\n"
            "try:\n    dask_predict.predict(None, 'm.onnx', 'o.tif')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert "pip install dask" in out.stdout
