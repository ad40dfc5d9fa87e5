"""Encodings the values prove wrong (issue 11): refused with the encoding to declare, or replaced
when exactly one known encoding fits, and said; the Sentinel-2 L2A offset of baseline 04.00+ read
from product metadata. Inputs are re-encoded copies of the real WorldCereal cube, run through the
bundled crop-type models, and compared with the run on the cube as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.units import BOA_OFFSET_PRESET, product_offset
from tests.engine_data import S1_VARS, S2_VARS, read_variable, s2_stack, variable, write_tif
from tests.tiny_models import S2_BANDS
from tests.tolerances import assert_same_classes

MODELS = Path(__file__).resolve().parent.parent / "eo_missing_qgis" / "models"
S2_MODEL, S1_MODEL = str(MODELS / "crop_type_europe_s2.onnx"), str(MODELS / "crop_type_europe_s1.onnx")
X10000 = "reflectance x 10000 (L2A DN)"


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(classes, probabilities) of the bundled S1 and S2 crop-type models on the cube as it is."""
    out = tmp_path_factory.mktemp("ref")
    maps = {}
    for key, model, names in (("S2", S2_MODEL, S2_VARS), ("S1", S1_MODEL, S1_VARS)):
        inputs = [RasterInput(variable(data_dir, v)) for v in names.values()]
        result = run_model(model, inputs, out / f"{key}.tif", options=RunOptions(write_probabilities=True))
        maps[key] = read_maps(result.outputs)
    return maps


def read_maps(outputs: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(outputs["prediction"]) as ds:
        classes = ds.read(1)
    with rasterio.open(outputs["probabilities"]) as ds:
        return classes, ds.read()


def run(model: str, inputs: list[RasterInput], out: Path) -> tuple:
    logs: list[str] = []
    result = run_model(model, inputs, out / "pred.tif", options=RunOptions(write_probabilities=True),
                       log=logs.append)
    return read_maps(result.outputs), "\n".join(logs)


def refused(model: str, inputs: list[RasterInput], out: Path) -> str:
    with pytest.raises(InputError) as err:
        run_model(model, inputs, out / "pred.tif")
    assert list(out.iterdir()) == []
    return str(err.value)


def s2_float_stack(tmp_path: Path, data_dir: Path, dn_offset: int = 0, metadata: dict | None = None,
                   dtype=np.float32) -> str:
    """The cube's S2 as one month-major stack (an Earth Engine export: float reflectance x 10000,
    band descriptions per month), nodata as NaN (float) or 0 (integers), ``dn_offset`` added."""
    stack = s2_stack(data_dir)
    missing = stack == 65535
    values = stack.astype(np.float64) + dn_offset
    nodata = np.nan if np.dtype(dtype).kind == "f" else 0
    values[missing] = nodata
    path = write_tif(tmp_path / "s2_stack.tif", values.reshape(-1, *values.shape[-2:]).astype(dtype),
                     nodata=nodata, descriptions=S2_BANDS * stack.shape[0])
    if metadata:
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(**metadata)
    return path


def s1_linear(tmp_path: Path, data_dir: Path) -> list[RasterInput]:
    """The cube's S1 as float linear power, one layer per polarisation (months as raster bands)."""
    layers = []
    for pol, name in S1_VARS.items():
        dn, _grid = read_variable(data_dir, name)
        with np.errstate(divide="ignore"):
            linear = 10 ** ((20 * np.log10(dn.astype(np.float64)) - 83) / 10)
        linear[dn == 65535] = np.nan
        layers.append(RasterInput(write_tif(tmp_path / f"S1_{pol}_linear.tif", linear.astype(np.float32),
                                            nodata=np.nan)))
    return layers


def test_float_reflectance_x10000_is_switched_and_said(tmp_path, data_dir, reference):
    out = tmp_path / "out"
    out.mkdir()
    (classes, _), log = run(S2_MODEL, [RasterInput(s2_float_stack(tmp_path, data_dir))], out)
    assert "s2_stack.tif: S2 values are not reflectance as 'reflectance (0-1)'" in log
    assert f"they fit only '{X10000}', which is used" in log
    assert_same_classes(classes, reference["S2"][0], reference["S2"][1])


def test_earth_engine_stack_in_epsg4326_is_switched_on_the_reference_grid(tmp_path, data_dir, reference):
    """The float x 10000 stack in EPSG:4326 (as Earth Engine exports it) with the cube's grid as
    reference: sampled through the resampling view, switched, and the map is the one the declared
    encoding gives."""
    from rasterio.crs import CRS
    from rasterio.warp import calculate_default_transform, reproject

    with rasterio.open(s2_float_stack(tmp_path, data_dir)) as src:
        crs = CRS.from_epsg(4326)
        transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        data = np.full((src.count, h, w), np.nan, np.float32)
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs=crs, src_nodata=np.nan, dst_nodata=np.nan)
        descriptions = list(src.descriptions)
    path = write_tif(tmp_path / "ee_s2_4326.tif", data, crs=crs, transform=transform, nodata=np.nan,
                     descriptions=descriptions)
    grid = variable(data_dir, S2_VARS["B02"])
    maps = {}
    for encoding in (None, X10000):
        out = tmp_path / f"out_{encoding is None}"
        out.mkdir()
        logs: list[str] = []
        result = run_model(S2_MODEL, [RasterInput(path, encoding=encoding)], out / "pred.tif",
                           options=RunOptions(write_probabilities=True, reference=grid), log=logs.append)
        maps[encoding] = read_maps(result.outputs)
        assert ("they fit only 'reflectance x 10000 (L2A DN)', which is used" in "\n".join(logs)) \
            == (encoding is None)
    assert_same_classes(maps[None][0], maps[X10000][0], maps[X10000][1])
    assert maps[None][0].shape == reference["S2"][0].shape


def test_dn_declared_as_0_1_is_refused_with_the_encoding_to_declare(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    inputs = [RasterInput(variable(data_dir, v), encoding="reflectance (0-1)") for v in S2_VARS.values()]
    msg = refused(S2_MODEL, inputs, out)
    assert "S2-L2A-B02: its S2 values (median" in msg and "are not reflectance as 'reflectance (0-1)'" in msg
    assert f"declare '{X10000}'" in msg


def test_linear_power_is_switched_and_said(tmp_path, data_dir, reference):
    out = tmp_path / "out"
    out.mkdir()
    (classes, _), log = run(S1_MODEL, s1_linear(tmp_path, data_dir), out)
    assert "S1 values are not dB as 'dB': they fit only 'linear power', which is used" in log
    assert "S1_VV_linear.tif" in log and "S1_VH_linear.tif" in log
    assert_same_classes(classes, reference["S1"][0], reference["S1"][1])


def test_linear_power_declared_as_db_is_refused(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    inputs = s1_linear(tmp_path, data_dir)
    for inp in inputs:
        inp.encoding = "dB"
    msg = refused(S1_MODEL, inputs, out)
    assert "S1_VV_linear.tif: its S1 values" in msg and "declare 'linear power'" in msg


def test_values_no_encoding_fits_are_refused(tmp_path, data_dir):
    out = tmp_path / "out"
    out.mkdir()
    path = s2_float_stack(tmp_path, data_dir)
    with rasterio.open(path, "r+") as ds:
        ds.write(ds.read() * 1000)  # DN x 1000: neither 0-1 nor x 10000
    msg = refused(S2_MODEL, [RasterInput(path)], out)
    assert "nor any known encoding" in msg and "s2_stack.tif" in msg


@pytest.mark.parametrize("metadata", [{"BOA_ADD_OFFSET_B2": "-1000"}, {"PROCESSING_BASELINE": "04.00"}])
def test_baseline_04_offset_is_read_from_product_metadata(tmp_path, data_dir, reference, metadata):
    out = tmp_path / "out"
    out.mkdir()
    path = s2_float_stack(tmp_path, data_dir, dn_offset=1000, metadata=metadata, dtype=np.uint16)
    (classes, _), log = run(S2_MODEL, [RasterInput(path)], out)
    item = next(iter(metadata.items()))
    assert f"S2 decoded as '{BOA_OFFSET_PRESET}' (product metadata: {item[0]}={item[1]})" in log
    assert_same_classes(classes, reference["S2"][0], reference["S2"][1])


def test_offset_without_metadata_is_pointed_out(tmp_path, data_dir, reference):
    """DN + 1000 without metadata cannot be proven from values, but no band has dark pixels: the
    log says so and names the encoding to declare; declared, the map is the cube's."""
    out = tmp_path / "out"
    out.mkdir()
    path = s2_float_stack(tmp_path, data_dir, dn_offset=1000, dtype=np.uint16)
    _maps, log = run(S2_MODEL, [RasterInput(path)], out)
    assert "the darkest 1 % of every band is reflectance 0.1 or more" in log
    assert f"declare '{BOA_OFFSET_PRESET}'" in log
    (out / "pred.tif").unlink()
    (classes, _), log = run(S2_MODEL, [RasterInput(path, encoding=BOA_OFFSET_PRESET)], out)
    assert "darkest" not in log
    assert_same_classes(classes, reference["S2"][0], reference["S2"][1])


def test_offset_already_removed_despite_metadata_is_switched(tmp_path, data_dir, reference):
    out = tmp_path / "out"
    out.mkdir()
    path = s2_float_stack(tmp_path, data_dir, metadata={"PROCESSING_BASELINE": "05.10"})
    (classes, _), log = run(S2_MODEL, [RasterInput(path)], out)
    assert "although its metadata says PROCESSING_BASELINE=05.10" in log
    assert f"'{X10000}', which is used" in log
    assert_same_classes(classes, reference["S2"][0], reference["S2"][1])


@pytest.mark.parametrize(("metadata", "offset"), [
    ({"PROCESSING_BASELINE": "N0400"}, -1000.0), ({"PROCESSING_BASELINE": "03.01"}, 0.0),
    ({"boa_add_offset_b12": "-1000"}, -1000.0), ({"BOA_ADD_OFFSET": "1000"}, -1000.0),
    ({"PROCESSING_BASELINE": "4.00"}, -1000.0), ({"AREA_OR_POINT": "Area"}, None),
])
def test_product_offset_from_metadata(metadata, offset):
    found = product_offset(metadata)
    assert (found[0] if found else None) == offset
