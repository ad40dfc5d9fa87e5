"""Models and options (issue 11): outputs shaped against the card with a probe batch, one clear
line for bad options and hostile cards, and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from eo_missing_qgis.core.card import ModelCardError, card_from_dict, read_card
from eo_missing_qgis.core.card.model import CARD_KEY
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import Cancelled, ModelError, OptionError
from eo_missing_qgis.core.raster_inputs import RasterInput
from tests.engine_data import S2_VARS, variable
from tests.tiny_models import card_dict, tiny_onnx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(tiny_onnx(tmp_path_factory.mktemp("m") / "s2.onnx", card_dict(modalities=("S2",))))


@pytest.fixture
def out(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def s2_inputs(data_dir) -> list[RasterInput]:
    return [RasterInput(variable(data_dir, v)) for v in S2_VARS.values()]


def reshaped_output(src: str, path: Path, extra: list, dims: list[str]) -> str:
    """The tiny model with ``extra`` nodes turning its (batch, classes) output 'probabilities'
    into another layout, declared with symbolic ``dims`` so the graph check cannot see it."""
    m = onnx.load(src)
    for node in m.graph.node:
        node.output[:] = ["per_pixel" if o == "probabilities" else o for o in node.output]
    m.graph.node.extend(extra)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, dims))
    onnx.save(m, str(path))
    return str(path)


def test_output_classes_by_batch_is_refused(tmp_path, data_dir, model, out):
    # (classes, batch) used to be reshaped into (batch, classes): a scrambled map, exit 0.
    bad = reshaped_output(model, tmp_path / "transposed.onnx",
                          [helper.make_node("Transpose", ["per_pixel"], ["probabilities"], perm=[1, 0])],
                          ["a", "b"])
    with pytest.raises(ModelError) as err:
        run_model(bad, s2_inputs(data_dir), out / "pred.tif")
    assert "probe batch of 5 pixels the model returned (3, 5), not (5, 3)" in str(err.value)
    assert list(out.iterdir()) == []


def test_output_per_time_step_is_refused(tmp_path, data_dir, model, out):
    # (batch, time, classes) used to end in a numpy broadcast traceback.
    repeats = onnx.numpy_helper.from_array(np.array([1, 12, 1], dtype=np.int64), "repeats")
    axes = onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    bad = reshaped_output(model, tmp_path / "per_step.onnx", [
        helper.make_node("Constant", [], ["axes"], value=axes),
        helper.make_node("Constant", [], ["repeats"], value=repeats),
        helper.make_node("Unsqueeze", ["per_pixel", "axes"], ["one_step"]),
        helper.make_node("Tile", ["one_step", "repeats"], ["probabilities"]),
    ], ["batch", "time", "classes"])
    with pytest.raises(ModelError, match=r"returned \(5, 12, 3\), not \(5, 3\)"):
        run_model(bad, s2_inputs(data_dir), out / "pred.tif")
    assert list(out.iterdir()) == []


def deep_card_model(src: str, path: Path, depth: int) -> str:
    m = onnx.load(src)
    for prop in m.metadata_props:
        if prop.key == CARD_KEY:
            card = json.loads(prop.value)
            prop.value = json.dumps(card)[:-1] + ', "stac_mlm": ' + "[" * depth + "]" * depth + "}"
    onnx.save(m, str(path))
    return str(path)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_card_is_one_clear_error(tmp_path, model, depth):
    # 100 000 levels used to end in a RecursionError; 100 levels parse but cannot be shown safely.
    with pytest.raises(ModelCardError, match="nested"):
        read_card(deep_card_model(model, tmp_path / "deep.onnx", depth))


def test_bundled_cards_are_not_too_deep():
    for path in (ROOT / "eo_missing_qgis" / "models").glob("*.onnx"):
        assert read_card(path).name


@pytest.mark.parametrize(("option", "value", "message"), [
    ("tile_size", 0, "tile size must be at least 1 pixel, not 0"),
    ("memory_mb", -5, "memory budget must be a positive number of MB, not -5"),
    ("memory_mb", float("nan"), "memory budget must be a positive number of MB, not nan"),
])
def test_bad_run_options_are_refused(option, value, message):
    with pytest.raises(OptionError, match=message):
        RunOptions(**{option: value})


def test_negative_time_index_is_refused(data_dir):
    with pytest.raises(OptionError, match=r"time index of .* must be 0 .* not -3"):
        RasterInput(variable(data_dir, "S2-L2A-B04"), time_index=-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--time-index", "-3"], "must be 0 (the oldest step) or more, not -3"),
    (["--memory-mb", "-5"], "memory budget must be a positive number of MB, not -5"),
    (["--tile-size", "0"], "tile size must be at least 1 pixel, not 0"),
])
def test_cli_bad_options_are_one_line(tmp_path, data_dir, args, message):
    cube = str(data_dir / "worldcereal" / "worldcereal_preprocessed_inputs.nc")
    bundled = str(ROOT / "eo_missing_qgis" / "models" / "crop_type_europe_s2.onnx")
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", bundled,
                           "--input", cube, *args, "--out", str(tmp_path / "o.tif"), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_deep_card_in_the_cli_is_one_line(tmp_path, data_dir, model):
    deep = deep_card_model(model, tmp_path / "deep.onnx", 100_000)
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "predict", "--model", deep,
                           "--input", variable(data_dir, "S2-L2A-B04"), "--out", str(tmp_path / "o.tif")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "nested too deeply" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.tif").exists()


def test_probe_accepts_the_tiny_and_bundled_models(tmp_path, model):
    from eo_missing_qgis.core.session import open_session

    assert open_session(model).card.name
    card = card_from_dict(card_dict(task="regression"))
    assert open_session(tiny_onnx(tmp_path / "reg.onnx", card)).card.task == "regression"
    for path in (ROOT / "eo_missing_qgis" / "models").glob("*.onnx"):
        assert open_session(path, threads=1).card.name


@pytest.mark.parametrize("backend", ["rasterio", "gdal"])
def test_failed_read_shows_gdals_message(tmp_path, data_dir, model, out, monkeypatch, backend):
    # A VRT whose source file is gone used to fail with "See previous exception for details".
    from osgeo import gdal

    from eo_missing_qgis.core import raster_io

    monkeypatch.setenv("EO_MISSING_RASTER_BACKEND", backend)
    monkeypatch.setattr(raster_io, "_rasterio", None)  # chosen again, from the variable
    source = tmp_path / "b04.tif"
    gdal.Translate(str(source), variable(data_dir, S2_VARS["B04"]))
    gdal.BuildVRT(str(tmp_path / "b04.vrt"), [str(source)]).FlushCache()
    source.unlink()
    inputs = [RasterInput(variable(data_dir, v)) for b, v in S2_VARS.items() if b != "B04"]
    inputs.append(RasterInput(str(tmp_path / "b04.vrt"), modality="S2", band="B04"))
    with pytest.raises(ValueError) as err:
        run_model(model, inputs, out / "pred.tif")
    assert f"{source}: No such file or directory" in str(err.value)
    assert "See previous exception" not in str(err.value)
    assert list(out.iterdir()) == []


def huge_vrt(folder: Path, data_dir, name: str, size: int) -> str:
    """A ``size``² px VRT of one cube variable: the real 100² px cube in its top-left corner,
    nodata elsewhere (a huge mosaic of which little is filled)."""
    from osgeo import gdal

    path = folder / f"{name}.vrt"
    gdal.Translate(str(path), variable(data_dir, name), format="VRT")
    text = path.read_text()
    path.write_text(text.replace('rasterXSize="100" rasterYSize="100"',
                                 f'rasterXSize="{size}" rasterYSize="{size}"', 1))
    return str(path)


@pytest.mark.parametrize(("seconds", "text"), [
    (20, "< 1 min"), (12 * 60, "about 12 min"), (3 * 3600 + 20 * 60, "about 3 h 20 min"),
    (5 * 86400, "about 5 days"), (23 * 86400, "about 3 weeks"),
])
def test_duration_text(seconds, text):
    from eo_missing_qgis.core.engine import duration_text

    assert duration_text(seconds) == text


def test_time_left_is_logged_after_the_first_tile_and_shown_as_status(data_dir, model, out):
    logs, statuses = [], []
    run_model(model, s2_inputs(data_dir), out / "pred.tif", options=RunOptions(tile_size=16),
              log=logs.append, status=statuses.append)
    estimates = [m for m in logs if "estimated time left" in m]
    assert len(estimates) == 1 and "from the first 1 of " in estimates[0], logs
    assert "10000 pixels in all" in estimates[0]
    assert statuses and all(s.endswith(" left") and "% done, " in s for s in statuses)
    shares = [int(s.split(" %")[0]) for s in statuses]
    assert shares == sorted(shares) and shares[-1] < 100


def test_huge_raster_announces_its_time_after_the_first_tile(tmp_path, data_dir, model, out):
    # 200 000² px used to start a run of weeks without a word; the estimate comes after one tile.
    inputs = [RasterInput(huge_vrt(tmp_path, data_dir, v, 200_000)) for v in S2_VARS.values()]
    logs, statuses = [], []
    with pytest.raises(Cancelled):
        run_model(model, inputs, out / "pred.tif", log=logs.append, status=statuses.append,
                  cancel=lambda: bool(statuses))
    estimate = next(m for m in logs if "estimated time left" in m)
    assert "from the first 1 of " in estimate and f"{200_000 ** 2} pixels in all" in estimate
    assert statuses == [statuses[0]] and statuses[0].startswith("0 % done, ")
    assert list(out.iterdir()) == []


_PEAK_CHILD = """
import json, sys
import numpy as np
from rasterio.warp import transform
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.session import open_session, peak_growth
model, budget, out, *paths = sys.argv[1:]
session = open_session(model, "cpu")
inputs = [RasterInput(p) for p in paths]
# PROJ's first transformation (the footprint check, the latitude/longitude inputs) loads its
# database once per process, ~33 MB: like the loaded model, outside what the budget governs
# (QGIS has PROJ loaded); the run's own peak is measured.
transform("EPSG:32631", "EPSG:4326", [664000.0], [5612120.0])
logs = []
grown = peak_growth(lambda: run_model(session, inputs, out, options=RunOptions(memory_mb=float(budget)),
                                      log=logs.append))
print(json.dumps({"peak_mb": grown / 2**20, "log": logs}))
"""


def test_memory_budget_bounds_the_real_peak(tmp_path, data_dir):
    # --memory-mb 512 used to peak at 1.6-1.9 GB: the network's activations were not counted.
    from tests.engine_data import read_variable, write_tif

    paths = []
    for name in S2_VARS.values():  # the real cube tiled 3 x 3: 300 x 300 px, 12 months
        values, grid = read_variable(data_dir, name)
        paths.append(write_tif(tmp_path / f"{name}.tif", np.tile(values, (1, 3, 3)), nodata=grid["nodata"],
                               descriptions=[name] * 12))
    bundled = str(ROOT / "eo_missing_qgis" / "models" / "crop_type_europe_s2.onnx")
    budget = 24  # the smallest the engine takes; its run peaked at 12 MB (48 MB: 17 MB)
    proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, bundled, str(budget), str(tmp_path / "o.tif"),
                           *paths], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["peak_mb"] <= budget, (report["peak_mb"], [m for m in report["log"] if "tiles" in m])
    assert (tmp_path / "o.tif").is_file()
