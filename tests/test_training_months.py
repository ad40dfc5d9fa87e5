"""The months benchmark (issue 10 item 5): seeded paired month subsets, thinning that leaves the
dataset untouched, RF and a bundled ONNX model scored on one month and on all, and a tiny end
to end run writing results.md and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eo_missing_qgis.core.card import read_card
from training import benchmark
from training.benchmark_months import (
    ALL,
    bundled_outputs,
    check_rows,
    load_months_spec,
    months_benchmark,
    resplitter,
    step_subsets,
    thin,
    thinned_split,
)
from training.config import dataset_method_config
from training.datasets import load_dataset
from training.methods.rf import evaluate_rf, fit_rf
from training.run import evaluate, fit, mapped_samples, metrics, predict, save_run

from .conftest import ROOT
from .test_training_cli import run_cli
from .tolerances import REGRESSION_METRIC_RTOL, STATS_RTOL

RESPLIT = resplitter(0, 0.2, "grouped")
CROP = "crop_type_europe"  # the Belgian cube's region, with its bundled models
#: S1: every test sample of the region has some (115 of 307 have no S2 value at all, where the S2
#: model rightly gives nodata: the benchmark scores the samples the plugin maps, see below).
BUNDLED_S1 = ROOT / "eo_missing_qgis" / "models" / f"{CROP}_s1.onnx"


@pytest.fixture(scope="module")
def prep(data_dir):
    return RESPLIT(load_dataset(CROP, data_dir))


def test_subsets_are_seeded_and_keep_exactly_k_steps_with_data_first(prep):
    data, idx = prep.data, prep.splits["test"]
    available = np.isfinite(data.physical["S2"][idx]).all(axis=2)
    for k in (1, 3, 6):
        keep = step_subsets(data, idx, ["S2"], k, seed=2)
        assert keep.shape == (len(idx), data.steps)
        assert (keep.sum(axis=1) == k).all()
        # the same (seed, k) gives the same subsets to every row; another seed other subsets
        assert (keep == step_subsets(data, idx, ["S2"], k, seed=2)).all()
        assert (keep != step_subsets(data, idx, ["S2"], k, seed=3)).any()
        # a sample with k steps of data keeps only such steps
        enough = available.sum(axis=1) >= k
        assert (available[enough] | ~keep[enough]).all()
    assert step_subsets(data, idx, ["S2"], ALL, seed=0).all()


def test_thinning_sets_dropped_steps_to_nan_in_a_copy(prep):
    data, idx = prep.data, prep.splits["test"]
    before = {m: v.copy() for m, v in data.physical.items()}
    keep = step_subsets(data, idx, ["S2"], 2, seed=0)
    thinned = thin(data, idx, keep, ["S2"])
    s2 = thinned.physical["S2"]
    assert np.isnan(s2[idx][~keep]).all()
    np.testing.assert_array_equal(s2[idx][keep], before["S2"][idx][keep])  # NaN == NaN here
    others = np.setdiff1d(np.arange(len(data.target)), idx)
    np.testing.assert_array_equal(s2[others], before["S2"][others])
    np.testing.assert_array_equal(thinned.physical["S1"], before["S1"])  # not the cell's modality
    for m, values in before.items():  # the original dataset is unmodified
        np.testing.assert_array_equal(data.physical[m], values)
    # the network inputs follow the values: dropped steps get the fill (0, the band mean)
    arrays = thinned_split(prep, RESPLIT, ["S2"], 2, 0).arrays["test"]
    assert (arrays["S2"][~keep] == 0).all() and (arrays["S2"][keep] != 0).any()
    mask = arrays.get("mask_s2")  # built once runs take availability masks (time-flexible students)
    if mask is not None:
        available = np.isfinite(before["S2"][idx]).all(axis=2)
        np.testing.assert_array_equal(mask.astype(bool), keep & available)


def test_rf_and_bundled_model_score_one_month_and_all(prep):
    from eo_missing_qgis.core.session import open_session

    y = prep.arrays["test"]["y"]
    forest = fit_rf(prep, ["S1"], seed=0, trees=30, jobs=1)
    session = open_session(BUNDLED_S1, threads=1)
    scorers = {
        "rf": lambda p: evaluate_rf(forest, p, ["S1"], "test")[1],
        "bundled": lambda p: bundled_outputs(session, p.data, p.splits["test"]),
    }
    for name, scorer in scorers.items():
        full = scorer(prep)
        every = scorer(thinned_split(prep, RESPLIT, ["S1"], ALL, 0))
        np.testing.assert_allclose(every, full, rtol=STATS_RTOL)
        score_all = metrics("classification", every, y)["macro_f1"]
        assert score_all == pytest.approx(metrics("classification", full, y)["macro_f1"], rel=STATS_RTOL)
        one = scorer(thinned_split(prep, RESPLIT, ["S1"], 1, 0))
        assert one.shape == full.shape and np.isfinite(one).all()
        assert np.abs(one - full).max() > 0.1, name  # one month is not the full year
        assert metrics("classification", one, y)["macro_f1"] < score_all, name


def test_rows_that_cannot_be_configured_are_refused_before_training():
    spec = {"rows": {"bad": {"method": "single", "set": ["no_such_key=1"], "role": "fixed"}}}
    with pytest.raises(ValueError, match="months row 'bad' on crop_type: unknown config keys"):
        check_rows(spec, ["crop_type"], [])
    with pytest.raises(ValueError, match="unknown months rows"):
        load_months_spec(["no such row"])


def test_tiny_run_writes_results_and_plot(data_dir, tmp_path, prep):
    # a saved run (what `python -m training fit --out` writes) is scored beside the trained rows
    cfg = dataset_method_config(CROP, "single", ["max_epochs=1", "net.filters=8", "modalities=[S2]"])
    module, trainer = fit(cfg, prep)
    saved = save_run(tmp_path / "saved_s2", module, trainer, cfg, prep, {})
    spec = load_months_spec(["fixed single", "rf", "bundled"], ["1", "all"], subset_seeds=2, grid=1)
    records = months_benchmark(
        [CROP],
        data_dir,
        tmp_path / "out",
        spec,
        seeds=1,
        modalities=["S1"],
        overrides=["max_epochs=2"],
        runs=[saved],
        jobs=1,
        log=lambda text: None,
    )
    assert {(r["row"], r["modality"], r["k"]) for r in records} == {
        (row, mod, k)
        for row, mod in (("fixed single", "S1"), ("rf", "S1"), ("bundled", "S1"), ("saved_s2", "S2"))
        for k in (1, ALL)
    }
    text = (tmp_path / "out" / "results.md").read_text()
    assert f"## {CROP} S2" in text and f"## {CROP} S1" in text and "k = 1" in text
    assert "| fixed single - bundled |" in text and "test metrics in its card" in text
    png = (tmp_path / "out" / "months.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_cli_months_on_lfmc_relative_steps(data_dir, tmp_path):
    out = tmp_path / "months"
    run_cli(
        "months",
        "--dataset",
        "lfmc",
        "--modality",
        "S2",
        "--seeds",
        "1",
        "--rows",
        "bundled",
        "rf",
        "--subset-seeds",
        "1",
        "--grid",
        "1",
        "--jobs",
        "1",
        "--out",
        str(out),
        data_dir=data_dir,
    )
    results = json.loads((out / "results.json").read_text())
    assert {r["k"] for r in results["records"]} == {1, 2, ALL}  # LFMC: 3 steps before the date
    rmse = {(r["row"], r["k"]): r["test"]["rmse"] for r in results["records"]}
    # the forest, trained on full series, loses accuracy with every month thinned away
    assert rmse[("rf", 1)] > rmse[("rf", 2)] > rmse[("rf", ALL)]
    # the bundled student runs as its card says on all steps, the thinned steps reach it, and it
    # was trained for 1 to 3 months (time dropout, masks): one month stays far better than the forest's
    card = read_card(ROOT / "eo_missing_qgis" / "models" / "lfmc_s2.onnx")
    expected = card.provenance.metrics["rmse"]
    assert rmse[("bundled", ALL)] == pytest.approx(expected, rel=REGRESSION_METRIC_RTOL)
    assert rmse[("bundled", 1)] != pytest.approx(rmse[("bundled", ALL)], rel=REGRESSION_METRIC_RTOL)
    assert rmse[("bundled", 1)] < 0.8 * rmse[("rf", 1)]
    assert "python -m training months --dataset lfmc" in (out / "results.md").read_text()


def test_samples_without_the_sensor_are_nodata_and_never_scored(prep):
    """S2 on the European test split: a sample without one step where every S2 band has a value
    is nodata on a map (the bundled model gives NaN there) and is left out of every row's score;
    every other sample gets a value at every k, since thinning keeps a step with data first."""
    from eo_missing_qgis.core.session import open_session

    test = prep.splits["test"]
    mapped = mapped_samples(prep.data, test, ["S2"])
    assert 0 < (~mapped).sum() < len(test)  # the patch without 10 m bands, cloudy samples
    session = open_session(ROOT / "eo_missing_qgis" / "models" / f"{CROP}_s2.onnx", threads=1)
    for k in (1, ALL):
        out = bundled_outputs(session, thinned_split(prep, RESPLIT, ["S2"], k, 0).data, test)
        assert np.isnan(out[~mapped]).all() and np.isfinite(out[mapped]).all(), k


def test_a_students_card_figures_are_on_the_samples_the_plugin_maps(prep):
    """``evaluate`` (the card's val / test figures) scores an S2 student on the samples with one
    complete S2 step only; the others are nodata in QGIS, not predictions."""
    cfg = dataset_method_config(CROP, "single", ["max_epochs=1", "net.filters=8", "modalities=[S2]"])
    module, _ = fit(cfg, prep)
    test = prep.arrays["test"]
    mapped = mapped_samples(prep.data, prep.splits["test"], ["S2"])
    out = predict(module.predictor(), test)
    assert evaluate(module, prep, "test") == metrics(module.task, out[mapped], test["y"][mapped])
    assert evaluate(module, prep, "test") != metrics(module.task, out, test["y"])


def test_benchmark_scores_one_sensor_rows_on_the_samples_qgis_maps(data_dir):
    """The benchmark's S1 / S2 rows (tables, validation choices, paired differences) count the
    test samples QGIS maps from that sensor, as the card does; the all-modality rows count all."""
    run = benchmark._Seed(CROP, data_dir, 0, [], log=lambda *_: None)
    test = run.prep.arrays["test"]
    out = np.random.default_rng(0).random((len(test["y"]), run.prep.data.info.n_outputs))
    mapped = mapped_samples(run.prep.data, run.prep.splits["test"], ["S2"])
    assert run.score("test", out, "S2") == metrics(run.task, out[mapped], test["y"][mapped])
    assert run.score("test", out, "all") == metrics(run.task, out, test["y"])
    scored = benchmark.test_sets([CROP], data_dir, [])[CROP]["mapped"]["S2"]
    assert sum(scored) == mapped.sum() < len(test["y"])
