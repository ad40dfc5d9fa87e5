"""End-to-end runs on the real WorldCereal cube: grid, nodata, layouts, outputs, session, CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eo_missing_qgis.core.card import card_from_dict
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.session import choose_providers, open_session
from tests.engine_data import (
    CUBE_TRANSFORM,
    S1_VARS,
    S2_VARS,
    CancelAfter,
    cube_path,
    read_variable,
    s2_stack,
    variable,
    write_tif,
)
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx
from tests.tolerances import assert_same_classes

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "s1s2": str(tiny_onnx(d / "s1s2.onnx", card_dict(modalities=("S1", "S2")))),
        "s2": str(tiny_onnx(d / "s2.onnx", card_dict(modalities=("S2",)))),
        "reg": str(tiny_onnx(d / "reg.onnx", card_dict("regression", modalities=("S2",)))),
    }


def expected_classes(model: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The same prediction computed by hand: decode, standardise, ORT on all pixels at once;
    class ids (rows, cols) and probabilities (classes, rows, cols)."""
    session = open_session(model)
    card = session.card
    feeds = {}
    for spec in card.inputs:
        names = list(S2_VARS.values()) if spec.modality == "S2" else list(S1_VARS.values())
        raw = np.stack([read_variable(data_dir, n)[0] for n in names], axis=-1).astype(np.float32)
        if spec.modality == "S2":
            phys = np.where(raw == 65535, np.nan, raw * np.float32(1e-4))
        else:
            phys = np.where(raw == 65535, np.nan, 20 * np.log10(np.maximum(raw, 1)) - 83)
        x = phys.reshape(12, -1, len(names)).transpose(1, 0, 2)
        x = (x - np.float32(spec.mean)) / np.float32(spec.std)
        feeds[spec.tensor] = np.nan_to_num(x).astype(np.float32)
    probs = session.run(feeds)[0]
    ids = np.array([c.id for c in card.output.classes])[probs.argmax(1)].reshape(100, 100)
    return ids, probs.T.reshape(-1, 100, 100)


def test_real_cube_prediction_has_the_cube_grid(tmp_path, data_dir, models):
    messages, fractions = [], []
    out = tmp_path / "crop.tif"
    result = run_model(models["s1s2"], [RasterInput(cube_path(data_dir))], out,
                       options=RunOptions(tile_size=64, write_probabilities=True),
                       progress=fractions.append, log=messages.append)
    assert result.provider == "CPUExecutionProvider"
    assert set(result.outputs) == {"prediction", "confidence", "probabilities"}
    assert result.pixels_predicted == 10000 and result.pixels_nodata == 0
    assert fractions == [1.0]  # the cube's 100 x 100 blocks make one window
    assert any("CPUExecutionProvider" in m for m in messages)
    with rasterio.open(variable(data_dir, "S2-L2A-B04")) as src, rasterio.open(out) as ds:
        assert ds.crs == src.crs and ds.crs.to_epsg() == 32631
        assert ds.transform.almost_equals(src.transform) and (ds.width, ds.height) == (100, 100)
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0 and ds.profile["tiled"]
        assert ds.profile["compress"] == "deflate"
        assert ds.colormap(1)[2] == (0xF1, 0x71, 0x05, 255) and ds.tags(1)["CLASS_2"] == "maize"
        classes = ds.read(1)
    assert_same_classes(classes, *expected_classes(models["s1s2"], data_dir))
    with rasterio.open(result.outputs["probabilities"]) as p, \
            rasterio.open(result.outputs["confidence"]) as c:
        probs, conf = p.read(), c.read(1)
        assert p.descriptions[1] == "probability maize"
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(conf, probs.max(axis=0))
    assert not list(tmp_path.glob(".*partial*"))


def test_layouts_give_identical_predictions(tmp_path, data_dir, models):
    values = s2_stack(data_dir)
    ref = run_model(models["s2"], [RasterInput(cube_path(data_dir))], tmp_path / "cube.tif",
                    options=RunOptions(write_probabilities=True))
    dates = [RasterInput(write_tif(tmp_path / f"m{t}.tif", values[t], nodata=65535), layout="date_per_layer",
                         modality="S2", bands=S2_BANDS, time_index=t) for t in range(12)]
    stack = RasterInput(write_tif(tmp_path / "stack.tif", values.reshape(108, 100, 100), nodata=65535),
                        modality="S2", layout="stacked", bands=S2_BANDS)
    run_model(models["s2"], dates, tmp_path / "dates.tif")
    run_model(models["s2"], [stack], tmp_path / "stack_out.tif")
    with rasterio.open(ref.outputs["prediction"]) as a, rasterio.open(ref.outputs["probabilities"]) as p:
        expected, probs = a.read(1), p.read()
    for name in ("dates.tif", "stack_out.tif"):
        with rasterio.open(tmp_path / name) as b:
            assert_same_classes(b.read(1), expected, probs)


def test_nodata_preserved_and_never_sent(tmp_path, data_dir, models):
    values = s2_stack(data_dir).astype(np.float32) / 10000
    values[:, :, 10:20, 30:60] = np.nan              # every date missing: nodata
    values[:6, 4, 50:60, 50:60] = np.nan             # some dates missing: filled like training
    layer = write_tif(tmp_path / "s2.tif", values.reshape(108, 100, 100))
    out = tmp_path / "pred.tif"
    layer = RasterInput(layer, modality="S2", layout="stacked", bands=S2_BANDS)
    result = run_model(models["s2"], [layer], out)
    assert result.pixels_nodata == 300 and result.pixels_predicted == 9700
    with rasterio.open(out) as ds, rasterio.open(result.outputs["confidence"]) as c:
        cls, conf = ds.read(1), c.read(1)
    assert (cls[10:20, 30:60] == 0).all() and (cls[50:60, 50:60] > 0).all() and (cls > 0).sum() == 9700
    assert np.isnan(conf[10:20, 30:60]).all() and np.isfinite(conf[50:60, 50:60]).all()


def test_regression_output_in_card_unit(tmp_path, data_dir, models):
    out = tmp_path / "lfmc.tif"
    result = run_model(models["reg"], [RasterInput(cube_path(data_dir))], out)
    assert set(result.outputs) == {"prediction"}
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.tags(1)["UNIT"] == "%" and ds.descriptions[0] == "LFMC (%)"
        assert np.isfinite(ds.read(1)).all()


def test_reference_grid_can_be_another_raster(tmp_path, data_dir, models):
    """A coarser reference grid reaching 100 m past the cube: inputs are resampled window by window
    onto it, and the pixels outside the cube are nodata."""
    from affine import Affine

    ref = write_tif(tmp_path / "grid.tif", np.zeros((1, 25, 20), np.uint8),
                    transform=Affine(40, 0, 664100, 0, -40, 5612020))
    out = tmp_path / "coarse.tif"
    logs = []
    result = run_model(models["s2"], [RasterInput(cube_path(data_dir))], out,
                       options=RunOptions(reference=ref), log=logs.append)
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (20, 25) and ds.transform == Affine(40, 0, 664100, 0, -40, 5612020)
        cls = ds.read(1)
    assert result.pixels_predicted == 440 and result.pixels_nodata == 60
    assert (cls[-3:] == 0).all() and (cls[:-3] > 0).all()
    assert any("resampled onto the reference grid" in m for m in logs)


def test_cancel_mid_run_stops_within_one_batch_and_leaves_nothing(tmp_path, data_dir, models):
    from eo_missing_qgis.core.errors import Cancelled

    token = CancelAfter(20)
    with pytest.raises(Cancelled):
        run_model(models["s2"], [RasterInput(cube_path(data_dir))], tmp_path / "x.tif",
                  options=RunOptions(batch_size=100), cancel=token)
    assert token.checks == 20  # the check before the next batch raised at once
    assert list(tmp_path.iterdir()) == []


def test_session_reports_provider_and_threads(models):
    s = open_session(models["s2"], device="cpu", threads=1)
    assert s.provider == "CPUExecutionProvider" and s.warnings == []
    gpu = open_session(models["s2"], device="gpu")
    assert gpu.provider == "CPUExecutionProvider" and "no GPU execution provider" in gpu.warnings[0]
    cuda, dml, cpu = "CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider"
    assert choose_providers([cuda, cpu, dml], "auto") == [cuda, dml, cpu]
    assert choose_providers([cuda, cpu], "cpu") == [cpu]


def test_core_imports_without_onnxruntime_or_rasterio():
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.modules['rasterio'] = None\n"
            "import eo_missing_qgis.core.engine, eo_missing_qgis.core.cli\n"
            "from eo_missing_qgis.core.session import open_session\n"
            "from eo_missing_qgis.core.raster_io import rasterio_module\n"
            "try:\n    rasterio_module()\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "pip install rasterio" in out.stdout


def test_cli_predicts_the_cube(tmp_path, data_dir, models):
    out = tmp_path / "cli.tif"
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", models["s1s2"],
                           "--input", cube_path(data_dir), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "100.0 %" in proc.stderr and f"prediction: {out}" in proc.stdout
    with rasterio.open(out) as ds:
        assert ds.transform == CUBE_TRANSFORM


def test_cli_explicit_layers(tmp_path, data_dir, models):
    values = s2_stack(data_dir)
    args = []
    for t in range(12):
        path = write_tif(tmp_path / f"date{t}.tif", values[t])
        args += ["--input", path, "--modality", "S2", "--layout", "date_per_layer",
                 "--bands", ",".join(S2_BANDS), "--time-index", str(t),
                 "--encoding", "reflectance x 10000 (L2A DN)"]
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", models["s2"],
                           *args, "--out", str(tmp_path / "o.tif"), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert card_from_dict(card_dict()).time.steps == 12


@pytest.fixture(scope="module")
def s2_values(data_dir):
    return s2_stack(data_dir)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 60), w=st.integers(1, 60), tile=st.integers(8, 70), batch=st.integers(1, 5000))
def test_every_pixel_written_once_whatever_the_windows(tmp_path_factory, models, s2_values,
                                                        h, w, tile, batch):
    """Random raster, tile and batch sizes: each output pixel holds the prediction of its own input."""
    d = tmp_path_factory.mktemp("prop")
    layer = RasterInput(write_tif(d / "s.tif", s2_values[:, :, :h, :w].reshape(108, h, w), nodata=65535),
                        modality="S2", layout="stacked", bands=S2_BANDS)
    options = RunOptions(tile_size=tile, batch_size=batch)
    result = run_model(models["s2"], [layer], d / "tiled.tif", options=options)
    whole = run_model(models["s2"], [layer], d / "whole.tif",
                      options=RunOptions(tile_size=4096, write_probabilities=True))
    assert result.pixels_predicted + result.pixels_nodata == h * w
    with rasterio.open(d / "tiled.tif") as a, rasterio.open(d / "whole.tif") as b, \
            rasterio.open(whole.outputs["probabilities"]) as p:
        assert a.shape == (h, w)
        assert_same_classes(a.read(1), b.read(1), p.read())
    with rasterio.open(result.outputs["confidence"]) as c, rasterio.open(whole.outputs["confidence"]) as e:
        np.testing.assert_allclose(c.read(1), e.read(1), rtol=1e-5)


def test_weather_and_dem_from_the_cube(tmp_path, data_dir):
    """AgERA5 (K x 100, mm x 100) and DEM variables are recognised and decoded without warnings."""
    card = card_dict(modalities=("S2",))
    card["inputs"] += [
        {"tensor": "weather", "modality": "weather", "sensor": "AgERA5", "layout": "NTC",
         "bands": [{"name": "temperature_2m", "unit": "K"}, {"name": "total_precipitation", "unit": "mm"}],
         "scaling": {"method": "standardize", "mean": [283.0, 60.0], "std": [6.0, 40.0]}},
        {"tensor": "dem", "modality": "DEM", "sensor": "Copernicus DEM", "layout": "NTC",
         "bands": [{"name": "elevation", "unit": "m"}, {"name": "slope", "unit": "degree"}],
         "scaling": {"method": "standardize", "mean": [100.0, 2.0], "std": [50.0, 2.0]}},
    ]
    model = tiny_onnx(tmp_path / "all.onnx", card)
    result = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "out.tif")
    assert result.warnings == [] and result.pixels_predicted == 10000
