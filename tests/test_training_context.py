"""Time-flexible students with context inputs: context tensors computed by the plugin's own
functions, time-step dropout that thins the student only, the time-as-channels MLP in every
method, and an exported student that the engine runs on one month of the real cube."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import onnx
import pytest
import rasterio
import torch

from eo_missing_qgis.core.block import BlockContext, context_tensor
from eo_missing_qgis.core.context import encode_month, step_available
from eo_missing_qgis.core.definitions import ContextEncoding, ContextKind
from eo_missing_qgis.core.engine import run_model
from tests.engine_data import s2_stack
from tests.test_context_engine import one_month
from training.config import CONFIG_DIR, load_config
from training.datasets import load_dataset
from training.export import build_card, declaration, export_run
from training.methods.base import keep_steps
from training.models import TempCNN, TimeMLP, build_encoder
from training.run import build_module, evaluate, fit, split_data

FAST = ["max_epochs=2", "patience=5"]


@pytest.fixture(scope="module")
def crop(data_dir):
    return split_data(load_dataset("crop_type", data_dir), seed=0)


def fast_config(method: str, extra=()):
    """Crop type, ``method``, then the dataset-independent fast student config."""
    files = [CONFIG_DIR / "crop_type.yaml", CONFIG_DIR / "methods" / f"{method}.yaml"]
    return load_config([*files, CONFIG_DIR / "student_fast.yaml"], [*FAST, *extra])


def test_context_arrays_are_what_the_engine_computes_and_follow_the_nans(data_dir):
    data = load_dataset("crop_type", data_dir)
    data.physical["S2"][:40, 3] = np.nan  # as a benchmark drops a month: physical values to NaN
    prep = split_data(data, seed=0)
    idx, arrays = prep.splits["train"], prep.arrays["train"]
    dropped = idx < 40
    assert dropped.any() and (arrays["mask_s2"][dropped, 3] == 0).all()
    assert (arrays["S2"][dropped, 3] == 0).all()  # filled as standardize fills NaN
    expected = np.isfinite(data.physical["S2"][idx]).all(axis=2)
    np.testing.assert_array_equal(arrays["mask_s2"], expected.astype(np.float32))
    np.testing.assert_allclose(arrays["month"], encode_month(data.months[idx], ContextEncoding.SIN_COS))
    np.testing.assert_allclose(arrays["latlon"][:, 0], data.latlon[idx, 0] / 90, rtol=1e-6)
    # the engine's own context tensors for one sample give the same numbers
    card = fast_card(prep)
    s = int(np.flatnonzero(dropped)[0])
    physical = {"S2": data.physical["S2"][idx[s]][..., None, None]}  # (time, bands, 1, 1)
    lat, lon = data.latlon[idx[s]]
    context = BlockContext(months=list(data.months[idx[s]]), lat=np.array([[lat]]), lon=np.array([[lon]]))
    keep = np.array([True])
    steps = {m: step_available(p, band_axis=1) for m, p in physical.items()}
    for spec in card.context:
        got = context_tensor(spec, card, steps, keep, context)
        np.testing.assert_allclose(got[0], arrays[spec.tensor][s], rtol=1e-6, atol=1e-7)


def fast_card(prep):
    """The card a fast kd student of ``prep`` gets (without training it)."""
    cfg = asdict(fast_config("kd"))
    run = {"config": cfg, "steps": prep.data.steps, "metrics": {"test": {}},
           "stats": {m: {"mean": list(s.mean), "std": list(s.std)} for m, s in prep.specs.items()},
           "card": declaration(cfg, prep.data, prep.splits["train"])}
    return build_card(run, prep.data.info, "probe")


def test_bad_context_arch_dropout_and_teacher_are_named(crop):
    with pytest.raises(ValueError, match="context must list each of mask, month, latlon at most once"):
        fast_config("kd", ["context=[months]"])
    with pytest.raises(ValueError, match="time_dropout is a probability"):
        fast_config("kd", ["time_dropout=1.5"])
    with pytest.raises(ValueError, match=r"unknown net\.arch 'transformer'; choose one of tempcnn, mlp"):
        build_encoder({"arch": "transformer"}, 9, 12)
    other = build_module(fast_config("teacher", ["context=[month]"]), crop).model.state_dict()
    with pytest.raises(ValueError, match=r"train the teacher with the student's net .* and context"):
        build_module(fast_config("kd"), crop).load_teacher(other)


def test_keep_steps_keeps_one_step_at_least_and_thins_at_the_rate():
    torch.manual_seed(0)
    keep = keep_steps(4000, 12, 0.5)
    assert keep.sum(1).min() >= 1
    thinned = (keep < 1).any(1).float().mean()
    assert 0.44 < float(thinned) < 0.54  # p = 0.5 (a random subset may keep every step)
    singles = (keep.sum(1) == 1).float().mean()
    assert float(singles) > 0.13  # about a third of the thinned samples keep a single step
    assert (keep_steps(50, 12, 0.0) == 1).all() and keep_steps(20, 1, 1.0).sum(1).min() == 1


def test_time_dropout_thins_the_student_view_only(crop):
    torch.manual_seed(1)
    student = build_module(fast_config("kd", ["time_dropout=1.0"]), crop)
    batch = {k: torch.from_numpy(v[:64]) for k, v in crop.arrays["train"].items()}
    thin = student.thin(batch)
    assert thin["full"] is batch
    gone = thin["mask_s2"] < batch["mask_s2"]
    assert gone.any()
    assert (thin["S2"][gone] == 0).all() and (thin["S1"][gone & (batch["mask_s1"] > 0)] == 0).all()
    kept = thin["mask_s2"] > 0
    torch.testing.assert_close(thin["S2"][kept], batch["S2"][kept])
    torch.testing.assert_close(thin["month"], batch["month"])  # the month of a missing step is known
    torch.testing.assert_close(thin["DEM"], batch["DEM"])  # static, never missing by date
    teacher = build_module(fast_config("teacher", ["time_dropout=1.0"]), crop)
    assert teacher.thin(batch) is batch


@pytest.mark.parametrize("method", ["single", "mdico", "dis2"])
def test_the_mlp_plugs_into_every_method(crop, method):
    module, _ = fit(fast_config(method, ["max_epochs=1"]), crop)
    assert 0 <= evaluate(module, crop, "val")["macro_f1"] <= 1
    encoders = [m for m in module.predictor().modules() if isinstance(m, (TempCNN, TimeMLP))]
    assert encoders and all(isinstance(m, TimeMLP) for m in encoders)


def test_time_flexible_student_runs_on_one_month_through_the_engine(crop, data_dir, tmp_path):
    teacher, _ = fit(fast_config("teacher"), crop)
    cfg = fast_config("kd")
    module, _ = fit(cfg, crop, teacher.model.state_dict())
    run = {"config": asdict(cfg), "steps": crop.data.steps,
           "stats": {m: {"mean": list(s.mean), "std": list(s.std)} for m, s in crop.specs.items()},
           "metrics": {"test": evaluate(module, crop, "test")}}
    path = tmp_path / "crop_type_s2_fast.onnx"
    card, diff = export_run(module, run, crop, path, "crop_type_s2_fast")
    assert diff <= 1e-4
    assert card.time.min_steps == 1 and card.time.alignment == "calendar"
    assert card.time.first_month is None  # East Africa starts in December, Flanders in November
    assert [(c.kind, c.tensor) for c in card.context] == [
        (ContextKind.MASK, "mask_s2"), (ContextKind.MONTH, "month"), (ContextKind.LATLON, "latlon")]
    assert card.title.endswith("with month and location") and card.footprint
    assert "from 1 to 12 monthly composites of S2 with month and location" in card.description
    assert card.stac_mlm["mlm:architecture"] == "time-as-channels MLP"
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["s2", "mask_s2", "month", "latlon"]
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Conv", "ConvTranspose"} and ops & {"Gemm", "MatMul"}
    macs = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) == 2)
    assert macs <= 150_000  # issue 13: a few Gemm per pixel, 12 x (9 + 1 + 2) + 3 inputs
    messages: list[str] = []
    result = run_model(path, [one_month(tmp_path, data_dir, 7, "2021-06-12")], tmp_path / "out.tif",
                       log=messages.append)
    assert any("1 of 12 months: 2021-06" in m for m in messages), messages
    with rasterio.open(result.outputs["prediction"]) as ds:
        classes = ds.read(1)
    valid = (s2_stack(data_dir)[7] != 65535).all(axis=0)
    ids = {c.id for c in card.output.classes}
    assert valid.sum() > 9000 and set(np.unique(classes[valid])) <= ids and (classes[~valid] == 0).all()


def test_time_axis_per_dataset(data_dir):
    lfmc = load_dataset("lfmc", data_dir)
    cfg = asdict(load_config([CONFIG_DIR / "lfmc.yaml", CONFIG_DIR / "methods" / "kd.yaml"]))
    every = np.arange(len(lfmc.target))
    assert declaration(cfg, lfmc, every) == {"time": {"alignment": "relative", "min_steps": 3}, "context": []}
    crop = load_dataset("crop_type", data_dir)
    cfg = asdict(fast_config("kd"))
    flanders = np.flatnonzero(crop.meta["region"] == "flanders")
    time = declaration(cfg, crop, flanders)["time"]
    assert time == {"alignment": "calendar", "min_steps": 1, "first_month": 11}  # all start in November
