"""Bad input: each case is a clear error (or a warning where the run can go on) and leaves no
output behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, reproject

from eo_missing_qgis.core.card import ModelCardError, card_from_dict, embed_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError, ModelError, OutputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import CUBE_TRANSFORM, S1_VARS, S2_VARS, cube_path, s2_stack, variable, write_tif
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(tiny_onnx(tmp_path_factory.mktemp("m") / "s2.onnx", card_dict(modalities=("S2",))))


@pytest.fixture(scope="module")
def s1s2(tmp_path_factory) -> str:
    return str(tiny_onnx(tmp_path_factory.mktemp("m") / "s1s2.onnx", card_dict(modalities=("S1", "S2"))))


@pytest.fixture
def out(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def refused(exc, match: str, model, inputs, out: Path, **kw):
    """Run, expect ``exc`` whose message contains ``match``, and check nothing was left in ``out``."""
    with pytest.raises(exc) as err:
        run_model(model, inputs, out / "pred.tif", **kw)
    assert match in str(err.value), str(err.value)
    assert list(out.iterdir()) == []
    return str(err.value)


def s2_inputs(data_dir, skip=()) -> list[RasterInput]:
    return [RasterInput(variable(data_dir, v)) for b, v in S2_VARS.items() if b not in skip]


def stacked(path, values, **kw) -> RasterInput:
    return RasterInput(write_tif(path, values.reshape(-1, *values.shape[-2:]), **kw), modality="S2",
                       layout="stacked", bands=S2_BANDS)


# -- inputs that do not provide what the card needs ------------------------------------------------
def test_missing_band(data_dir, model, out):
    msg = refused(InputError, "missing: S2 B07 (all 12 time steps)", model, s2_inputs(data_dir, ["B07"]), out)
    assert "B04" not in msg


def test_missing_modality(data_dir, s1s2, out):
    refused(InputError, "S1 VV (all 12 time steps); S1 VH", s1s2, s2_inputs(data_dir), out)


def test_extra_ambiguous_band(tmp_path, data_dir, model, out):
    copy = RasterInput(write_tif(tmp_path / "B04_copy.tif", s2_stack(data_dir)[:, 2]))
    refused(InputError, "S2 B04 time step 1 is given by both", model, [*s2_inputs(data_dir), copy], out)


def test_wrong_number_of_time_steps(tmp_path, data_dir, model, out):
    short = RasterInput(write_tif(tmp_path / "S2_B04.tif", s2_stack(data_dir)[:10, 2]))
    refused(InputError, "S2_B04.tif has 10 time steps but the model needs 12", model,
            [*s2_inputs(data_dir, ["B04"]), short], out)


def test_stacked_layer_with_wrong_band_count(tmp_path, data_dir, model, out):
    layer = stacked(tmp_path / "s.tif", s2_stack(data_dir)[:11])
    refused(InputError, "(12 x 9 = 108 raster bands), not 99", model, [layer], out)


def test_one_date_layer_without_time_index(tmp_path, data_dir, model, out):
    layer = RasterInput(write_tif(tmp_path / "d.tif", s2_stack(data_dir)[0], descriptions=S2_BANDS))
    refused(InputError, "holds one date: say which time step it is", model, [layer], out)


def test_band_names_do_not_match_band_count(tmp_path, data_dir, model, out):
    layer = RasterInput(write_tif(tmp_path / "d.tif", s2_stack(data_dir)[0]), modality="S2",
                        layout="date_per_layer", bands=S2_BANDS[:5], time_index=0)
    refused(InputError, "has 9 raster bands but 5 band names were given", model, [layer], out)


def test_unrecognised_layer_is_named(tmp_path, data_dir, model, out):
    layer = RasterInput(write_tif(tmp_path / "mystery.tif", s2_stack(data_dir)[:, 2]))
    refused(InputError, "mystery.tif: nothing in its name or band descriptions identifies a band", model,
            [*s2_inputs(data_dir, ["B04"]), layer], out)


def test_unknown_encoding_name(data_dir, model, out):
    inputs = [RasterInput(variable(data_dir, v), encoding="percent") for v in S2_VARS.values()]
    refused(InputError, "unknown encoding 'percent'", model, inputs, out)


def test_unknown_layout():
    with pytest.raises(InputError, match=r"layout of x\.tif must be one of"):
        RasterInput("x.tif", layout="bands_as_time")


# -- units ---------------------------------------------------------------------------------------------
def test_reflectance_x10000_declared_as_0_1_warns(tmp_path, data_dir, model, out):
    layer = stacked(tmp_path / "s.tif", s2_stack(data_dir).astype(np.float32))
    layer.encoding = "reflectance (0-1)"
    logs: list[str] = []
    result = run_model(model, [layer], out / "pred.tif", log=logs.append)
    hint = "look like reflectance x 10000, not 0-1"
    assert any("values of S2 B04" in w and hint in w for w in result.warnings)
    assert any(m.startswith("Warning: values of S2 B02") for m in logs)


def test_reflectance_given_where_db_expected_warns(tmp_path, data_dir, s1s2, out):
    refl = (s2_stack(data_dir)[:, :2].astype(np.float32) / 10000)
    s1 = [RasterInput(write_tif(tmp_path / f"S1_{p}.tif", refl[:, k])) for k, p in enumerate(("VV", "VH"))]
    result = run_model(s1s2, [*s2_inputs(data_dir), *s1], out / "pred.tif")
    assert any("S1 VV" in w and "not dB" in w for w in result.warnings)


# -- geometry --------------------------------------------------------------------------------------------
def test_layers_that_do_not_overlap(tmp_path, data_dir, s1s2, out):
    far = Affine(10, 0, 700000, 0, -10, 5612120)
    s1 = [RasterInput(write_tif(tmp_path / f"S1_{p}.tif", np.full((12, 100, 100), 2000, np.uint16),
                                transform=far), encoding="WorldCereal DN (20 log10 DN - 83, nodata 65535)")
          for p in ("VV", "VH")]
    refused(InputError, "does not overlap the reference grid", s1s2, [*s2_inputs(data_dir), *s1], out)


def _warp(path: Path, src_path: str, crs: CRS) -> str:
    with rasterio.open(src_path) as src:
        transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        data = np.full((src.count, h, w), 65535, np.uint16)
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs=crs, src_nodata=65535, dst_nodata=65535)
    return write_tif(path, data, crs=crs, transform=transform, nodata=65535)


def test_different_crs_is_resampled_onto_the_reference(tmp_path, data_dir, s1s2, out):
    s1 = [RasterInput(_warp(tmp_path / f"S1_{p}_3857.tif", variable(data_dir, v), CRS.from_epsg(3857)),
                      modality="S1", band=p, encoding="WorldCereal DN (20 log10 DN - 83, nodata 65535)")
          for p, v in S1_VARS.items()]
    logs: list[str] = []
    result = run_model(s1s2, [*s2_inputs(data_dir), *s1], out / "pred.tif", log=logs.append)
    assert any("resampled onto the reference grid" in m and "S1_VV_3857.tif" in m for m in logs)
    with rasterio.open(result.outputs["prediction"]) as ds:
        assert ds.crs.to_epsg() == 32631 and ds.transform == CUBE_TRANSFORM
        assert (ds.read(1)[2:-2, 2:-2] > 0).all()


def test_degree_crs_reference_grid(tmp_path, data_dir, model, out):
    layers = [RasterInput(_warp(tmp_path / f"{b}_4326.tif", variable(data_dir, v), CRS.from_epsg(4326)),
                          encoding="reflectance x 10000 (L2A DN)") for b, v in S2_VARS.items()]
    result = run_model(model, layers, out / "pred.tif")
    with rasterio.open(result.outputs["prediction"]) as ds, rasterio.open(layers[0].path) as ref:
        assert ds.crs.is_geographic and ds.crs.to_epsg() == 4326 and ds.transform == ref.transform
        assert abs(ds.transform.a) < 0.001  # pixel size in degrees
    assert result.pixels_predicted > 0.8 * (result.pixels_predicted + result.pixels_nodata)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_not_georeferenced(tmp_path, data_dir, model, out):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=108, dtype="uint16") as ds:
        ds.write(s2_stack(data_dir).reshape(108, 100, 100))
    layer = RasterInput(str(path), modality="S2", layout="stacked", bands=S2_BANDS)
    refused(InputError, "has no coordinate reference system or geotransform", model, [layer], out)


def test_reference_index_out_of_range(data_dir, model, out):
    refused(InputError, "reference input 20 does not exist", model, s2_inputs(data_dir), out,
            options=RunOptions(reference=20))


# -- missing data ------------------------------------------------------------------------------------------
def test_all_nodata_input(tmp_path, data_dir, model, out):
    layer = stacked(tmp_path / "s.tif", np.full((12, 9, 30, 30), 65535, np.uint16), nodata=65535)
    refused(InputError, "every pixel misses at least one required input (all nodata)", model, [layer], out)


def test_all_nan_input(tmp_path, model, out):
    layer = stacked(tmp_path / "s.tif", np.full((12, 9, 30, 30), np.nan, np.float32))
    refused(InputError, "all nodata", model, [layer], out)


# -- files that are not rasters ------------------------------------------------------------------------------
def test_empty_raster(tmp_path, model, out):
    vrt = tmp_path / "S2_B04.vrt"
    vrt.write_text('<VRTDataset rasterXSize="0" rasterYSize="0"></VRTDataset>')
    refused(InputError, "S2_B04.vrt cannot be read as a raster", model, [RasterInput(str(vrt))], out)


def test_container_without_bands_as_reference(data_dir, model, out):
    refused(InputError, "holds no raster bands (empty raster); it holds subdatasets", model,
            s2_inputs(data_dir), out, options=RunOptions(reference=cube_path(data_dir)))


def test_unreadable_file(tmp_path, model, out):
    bad = tmp_path / "S2_B04.tif"
    bad.write_bytes(b"this is not a GeoTIFF")
    refused(InputError, "cannot be read as a raster", model, [RasterInput(str(bad))], out)


def test_input_does_not_exist(tmp_path, model, out):
    refused(InputError, "does not exist", model, [RasterInput(str(tmp_path / "nope_B04.tif"))], out)


# -- models ------------------------------------------------------------
def test_corrupt_onnx(tmp_path, model, data_dir, out):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(Path(model).read_bytes()[:300])
    refused(ModelCardError, "is not an ONNX model", str(broken), s2_inputs(data_dir), out)


def test_onnx_graph_that_runtime_refuses(tmp_path, model, data_dir, out):
    m = onnx.load(model)
    m.graph.node[0].op_type = "NoSuchOperator"
    onnx.save(m, tmp_path / "bad.onnx")
    refused(ModelError, "bad.onnx cannot be loaded by ONNX Runtime", str(tmp_path / "bad.onnx"),
            s2_inputs(data_dir), out)


def test_onnx_without_card(tmp_path, model, data_dir, out):
    m = onnx.load(model)
    del m.metadata_props[:]
    onnx.save(m, tmp_path / "plain.onnx")
    refused(ModelCardError, "carries no model card", str(tmp_path / "plain.onnx"), s2_inputs(data_dir), out)


def test_card_graph_mismatch(tmp_path, data_dir, out):
    path = tiny_onnx(tmp_path / "six.onnx", card_dict(steps=6))
    m = onnx.load(path)
    wrong = card_dict(steps=12)
    wrong["inputs"][0]["tensor"] = "optical"
    embed_card(m, card_from_dict(wrong))
    onnx.save(m, path)
    msg = refused(ModelError, "the model card does not match the graph", str(path), s2_inputs(data_dir), out)
    assert "input 'optical' is not an input of the graph" in msg
    assert "needs inputs the card does not describe: s2" in msg


def test_model_file_missing(tmp_path, data_dir, out):
    refused(ModelError, "does not exist", str(tmp_path / "none.onnx"), s2_inputs(data_dir), out)


def test_halo_on_a_per_pixel_model_is_refused_clearly(tmp_path, data_dir, out):
    """A card claiming a halo for NTC inputs (written without validation) is refused on opening."""
    from dataclasses import replace

    path = tiny_onnx(tmp_path / "halo.onnx", card_dict())
    m = onnx.load(str(path))
    embed_card(m, replace(card_from_dict(card_dict()), halo=8))
    onnx.save(m, str(path))
    msg = refused(ModelCardError, "field 'halo': is 8 px", str(path), s2_inputs(data_dir), out)
    assert "needs layout NTCHW" in msg


# -- destinations ------------------------------------------------------
def test_destination_not_writable(data_dir, model):
    with pytest.raises(OutputError, match=r"cannot create output /sys/pred\.tif"):
        run_model(model, s2_inputs(data_dir), "/sys/pred.tif")


def test_destination_folder_missing(tmp_path, data_dir, model, out):
    with pytest.raises(OutputError, match="does not exist; create"):
        run_model(model, s2_inputs(data_dir), tmp_path / "no" / "pred.tif")


def test_destination_is_a_folder(data_dir, model, out):
    with pytest.raises(OutputError, match="is a folder"):
        run_model(model, s2_inputs(data_dir), out)


def test_destination_equal_to_an_input(tmp_path, data_dir, model):
    layer = stacked(tmp_path / "s.tif", s2_stack(data_dir))
    before = Path(layer.path).read_bytes()
    with pytest.raises(OutputError, match="is also an input"):
        run_model(model, [layer], layer.path)
    assert Path(layer.path).read_bytes() == before


def test_destination_equal_to_the_netcdf_input(data_dir, model):
    with pytest.raises(OutputError, match="is also an input"):
        run_model(model, [RasterInput(cube_path(data_dir))], cube_path(data_dir))


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_disk_full_while_writing(tmp_path, data_dir, model, out):
    """A file-size limit makes writes fail like a full disk; the CLI says so and leaves nothing."""
    values = np.random.default_rng(0).integers(1, 5000, size=(12, 9, 256, 256), dtype=np.uint16)
    layer = write_tif(tmp_path / "big.tif", values.reshape(108, 256, 256))
    proc = subprocess.run(
        [sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", model, "--input", layer,
         "--modality", "S2", "--layout", "stacked", "--bands", ",".join(S2_BANDS),
         "--out", str(out / "p.tif"), "--probabilities", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=_limit_file_size,
        env={**os.environ, "GDAL_CACHEMAX": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: writing" in proc.stderr and "failed (disk full?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_cli_user_error_has_no_traceback(tmp_path, data_dir, model):
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", model,
                           "--input", variable(data_dir, "S2-L2A-B04"), "--out", str(tmp_path / "o.tif")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "error: the layers do not match" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.tif").exists()
