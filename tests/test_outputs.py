"""Issue 11, "Outputs": every destination checked before running, GeoTIFF names only, an earlier
run's set replaced whole, every write and the final flush checked, signals and cancels end as
failures that leave nothing, the finest input grid by default, card strings escaped in tags."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import OutputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import CUBE_TRANSFORM, S1_VARS, S2_VARS, read_variable, variable, write_tif
from tests.test_engine_bad_inputs import refused, s2_inputs
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx

ROOT = Path(__file__).resolve().parent.parent
WORLDCEREAL_DN = "WorldCereal DN (20 log10 DN - 83, nodata 65535)"


def tiny_classifier(factory, *modalities: str) -> str:
    return str(tiny_onnx(factory.mktemp("m") / "tiny.onnx", card_dict(modalities=modalities)))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return tiny_classifier(tmp_path_factory, "S2")


@pytest.fixture(scope="module")
def s1s2(tmp_path_factory) -> str:
    return tiny_classifier(tmp_path_factory, "S1", "S2")


@pytest.fixture
def out(tmp_path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def s1_at_20m(data_dir: Path, folder: Path) -> list[str]:
    """The cube's S1 bands resampled to 20 m (every other pixel), as separate GeoTIFFs."""
    coarse = Affine(20, 0, CUBE_TRANSFORM.c, 0, -20, CUBE_TRANSFORM.f)
    return [write_tif(folder / f"{v}.tif", read_variable(data_dir, v)[0][:, ::2, ::2], transform=coarse,
                      nodata=65535) for v in S1_VARS.values()]


# -- destinations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pred.png", "pred.nc", "pred.jpg", "pred"])
def test_a_name_of_another_format_is_refused(data_dir, model, out, name):
    with pytest.raises(OutputError, match=r"written as GeoTIFF only; name it .*pred\.tif"):
        run_model(model, s2_inputs(data_dir), out / name)
    assert list(out.iterdir()) == []


def test_confidence_on_an_input_is_refused_and_the_input_kept(tmp_path, data_dir, model, out):
    layers = [RasterInput(write_tif(tmp_path / f"{v}.tif", read_variable(data_dir, v)[0]))
              for v in S2_VARS.values()]
    before = Path(layers[3].path).read_bytes()
    refused(OutputError, "is also an input", model, layers, out,
            options=RunOptions(confidence=layers[3].path))
    assert Path(layers[3].path).read_bytes() == before


def test_an_earlier_runs_set_is_replaced_whole(data_dir, model, out):
    logs: list[str] = []
    run_model(model, s2_inputs(data_dir), out / "p.tif", options=RunOptions(write_probabilities=True))
    assert {f.name for f in out.iterdir()} == {"p.tif", "p_confidence.tif", "p_probabilities.tif"}
    run_model(model, s2_inputs(data_dir), out / "p.tif", options=RunOptions(confidence=str(out / "c.tif")),
              log=logs.append)
    assert {f.name for f in out.iterdir()} == {"p.tif", "c.tif"}  # no stale confidence, probabilities
    assert any("removed" in m and "p_probabilities.tif" in m for m in logs)
    # A file of that name the plugin did not write is never removed.
    foreign = write_tif(out / "p_probabilities.tif", np.ones((1, 100, 100), np.uint8))
    run_model(model, s2_inputs(data_dir), out / "p.tif")
    assert Path(foreign).is_file() and (out / "p_confidence.tif").is_file()


def test_card_strings_are_escaped_in_the_tags(data_dir, tmp_path, out):
    card = card_dict(modalities=("S2",))
    card["title"] = "<script>alert(1)</script>"
    card["output"]["classes"][0]["name"] = "<img src=x onerror=alert(1)> & co"
    result = run_model(str(tiny_onnx(tmp_path / "html.onnx", card)), s2_inputs(data_dir), out / "p.tif")
    with rasterio.open(result.outputs["prediction"]) as ds:
        texts = [*ds.tags().values(), *ds.tags(1).values()]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in texts
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in texts
    assert not any("<" in t for t in texts)


# -- writes and the final flush ----------------------------------------------------------------------
def cli(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "eo_missing_qgis.core", "predict", *args]


def _full_disk_at(size: int) -> None:
    """In the child: writes past ``size`` bytes fail as on a full disk (EFBIG, no signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.parametrize("limit", [20_000, 200_000])
def test_disk_full_with_small_tiles_fails_and_leaves_nothing(tmp_path, model, out, limit):
    """Small tiles stay in GDAL's cache until the final flush, whose error GDAL only prints."""
    values = np.random.default_rng(0).integers(1, 5000, size=(108, 256, 256), dtype=np.uint16)
    layer = write_tif(tmp_path / "big.tif", values)
    proc = subprocess.run(
        cli("--model", model, "--input", layer, "--modality", "S2", "--layout", "stacked",
            "--bands", ",".join(S2_BANDS), "--out", str(out / "p.tif"), "--probabilities", "--quiet",
            "--tile-size", "16"),
        capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=lambda: _full_disk_at(limit),
    )
    assert proc.returncode == 2, proc.stderr
    assert "failed (disk full?)" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


# -- signals -----------------------------------------------------------------------------------------
def test_sigterm_stops_the_cli_and_leaves_nothing(tmp_path, out):
    model = tiny_onnx(tmp_path / "s1.onnx", card_dict(modalities=("S1",), steps=1))
    values = np.random.default_rng(1).normal(-15, 3, size=(2, 800, 800)).astype(np.float32)
    layer = write_tif(tmp_path / "s1.tif", values)
    proc = subprocess.Popen(
        cli("--model", str(model), "--input", layer, "--modality", "S1", "--layout", "stacked",
            "--bands", "VV,VH", "--encoding", "dB", "--out", str(out / "p.tif"), "--tile-size", "16",
            "--batch-size", "16"),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=ROOT)
    seen = b""
    while b"%" not in seen:  # the first batch is done: the run is under way
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, seen.decode()
        seen += chunk
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, (seen + rest).decode()
    assert b"error: stopped by SIGTERM; no output was written" in rest
    assert list(out.iterdir()) == []


# -- the output grid ---------------------------------------------------------------------------------
def test_finest_input_grid_by_default_or_the_one_asked(tmp_path, data_dir, s1s2, out):
    s1 = [RasterInput(p, encoding=WORLDCEREAL_DN) for p in s1_at_20m(data_dir, tmp_path)]
    inputs = [*s1, *s2_inputs(data_dir)]  # the 20 m layers first
    fine = run_model(s1s2, inputs, out / "fine.tif")
    coarse = run_model(s1s2, inputs, out / "coarse.tif", options=RunOptions(reference=0))
    with rasterio.open(fine.outputs["prediction"]) as a, rasterio.open(coarse.outputs["prediction"]) as b:
        assert (a.width, a.height, a.transform) == (100, 100, CUBE_TRANSFORM)
        assert (b.width, b.height, b.transform.a) == (50, 50, 20)


def test_cli_default_reference_is_the_finest_input(tmp_path, data_dir, s1s2, out):
    args = ["--model", s1s2]
    for path in s1_at_20m(data_dir, tmp_path):
        args += ["--input", path, "--encoding", WORLDCEREAL_DN]
    for v in S2_VARS.values():
        args += ["--input", variable(data_dir, v)]
    proc = subprocess.run(cli(*args, "--out", str(out / "p.tif"), "--quiet"), capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out / "p.tif") as ds:
        assert (ds.width, ds.height, ds.transform) == (100, 100, CUBE_TRANSFORM)


# -- Processing and qgis_process ------------------------------------------------------------------
def s2_tifs(data_dir: Path, folder: Path) -> list[str]:
    """The cube's S2 bands as GeoTIFFs of the user's, in a folder the tests watch."""
    return [write_tif(folder / f"{v}.tif", read_variable(data_dir, v)[0], nodata=65535)
            for v in S2_VARS.values()]


def test_processing_cancel_is_a_failure_and_leaves_nothing(plugin, data_dir, model, out):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    params = {"MODEL": model, "S2": [variable(data_dir, v) for v in S2_VARS.values()],
              "OUTPUT": str(out / "p.tif")}
    with pytest.raises(QgsProcessingException, match="Prediction cancelled; nothing was written"):
        processing.run("eomissing:predict", params, feedback=feedback)
    assert list(out.iterdir()) == []


def test_processing_confidence_on_a_layer_the_model_does_not_read_is_refused(plugin, tmp_path, data_dir,
                                                                             model, out):
    import processing
    from qgis.core import QgsProcessingException

    s1 = s1_at_20m(data_dir, tmp_path)  # given, but the S2 model reads neither S1 nor the DEM
    before = {p: Path(p).read_bytes() for p in s1}
    params = {"MODEL": model, "S1": s1[:1], "DEM": s1[1], "OUTPUT": str(out / "p.tif"),
              "S2": [variable(data_dir, v) for v in S2_VARS.values()]}
    for layer in s1:
        with pytest.raises(QgsProcessingException, match="is also an input"):
            processing.run("eomissing:predict", {**params, "CONFIDENCE": layer})
    assert {p: Path(p).read_bytes() for p in s1} == before and list(out.iterdir()) == []


def test_processing_grid_is_the_finest_input_or_the_reference_layer(plugin, tmp_path, data_dir, s1s2, out):
    import processing
    from osgeo import gdal

    s1 = s1_at_20m(data_dir, tmp_path)
    base = {"MODEL": s1s2, "S1": s1, "S2": [variable(data_dir, v) for v in S2_VARS.values()]}
    fine = processing.run("eomissing:predict", {**base, "OUTPUT": str(out / "fine.tif")})["OUTPUT"]
    coarse = processing.run("eomissing:predict", {**base, "REFERENCE": s1[0],
                                                  "OUTPUT": str(out / "coarse.tif")})["OUTPUT"]
    a, b = gdal.Open(fine), gdal.Open(coarse)
    assert (a.RasterXSize, a.RasterYSize, a.GetGeoTransform()[1]) == (100, 100, 10)
    assert (b.RasterXSize, b.RasterYSize, b.GetGeoTransform()[1]) == (50, 50, 20)


def test_qgis_process_checks_every_destination_and_touches_no_input(qgis_process, tmp_path, data_dir, model):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    layers = s2_tifs(data_dir, inputs)
    before = {p: Path(p).read_bytes() for p in layers}
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        ({"CONFIDENCE": layers[2]}, "is also an input"),
        ({"CONFIDENCE": str(out / "p.tif")}, "two outputs would be written to the same file"),
        ({"CONFIDENCE": str(out / "no" / "c.tif")}, "does not exist; create"),
        ({"OUTPUT": str(out / "p.png")}, "written as GeoTIFF only"),
        ({"OUTPUT": str(out / "p")}, "written as GeoTIFF only"),
    ]
    for change, message in cases:
        params = {"MODEL": model, "OUTPUT": str(out / "p.tif"), **change}
        args = [f"{k}={v}" for k, v in params.items()] + [f"S2={p}" for p in layers]
        proc = qgis_process("run", "eomissing:predict", "--", *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr, (change, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert list(out.iterdir()) == []
    ok = qgis_process("run", "eomissing:predict", "--", f"MODEL={model}", f"OUTPUT={out / 'p.tif'}",
                      *[f"S2={p}" for p in layers])
    assert "p_confidence.tif" in ok.stdout
    assert sorted(inputs.iterdir()) == sorted(Path(p) for p in layers)  # no .aux.xml next to them
    assert {p: Path(p).read_bytes() for p in layers} == before


@pytest.mark.parametrize(("signum", "message"), [(signal.SIGTERM, b"stopped by SIGTERM"),
                                                  (signal.SIGINT, b"cancelled")], ids=["SIGTERM", "Ctrl-C"])
def test_qgis_process_signal_fails_and_leaves_nothing(tmp_path, signum, message):
    """qgis_process cancels on Ctrl-C itself (through the feedback, every 2 s at most): a run long
    enough for that, stopped in its first tiles."""
    from scripts.qgis_process_env import qgis_process_env

    model = tiny_onnx(tmp_path / "s1.onnx", card_dict(modalities=("S1",), steps=1))
    rng = np.random.default_rng(2)
    layers = [write_tif(tmp_path / f"S1-SIGMA0-{b}.tif",
                        rng.normal(-15, 3, (1, 2400, 2400)).astype(np.float32)) for b in ("VV", "VH")]
    out = tmp_path / "out"
    out.mkdir()
    env = qgis_process_env(ROOT, tmp_path / "profile")
    subprocess.run(["qgis_process.bin", "plugins", "enable", "eo_missing_qgis"], env=env, check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.Popen(
        ["qgis_process.bin", "run", "eomissing:predict", "--", f"MODEL={model}", f"OUTPUT={out / 'p.tif'}",
         "TILE_SIZE=16", "BATCH_MB=24", *[f"S1={p}" for p in layers]],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    while b"tiles of" not in seen or seen.rstrip().endswith(b"px"):  # until the first progress tick
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, seen.decode()
        seen += chunk
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (seen + stdout + stderr).decode()
    assert b"ERROR:\tPrediction " + message + b"; nothing was written." in stderr
    assert list(out.iterdir()) == []
