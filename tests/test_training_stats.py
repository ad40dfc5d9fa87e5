"""The benchmark's statistics: sample std, macro-F1 over a fixed label set, cluster bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from training.run import metrics
from training.stats import headline, macro_f1, paired_difference, rmse, spread


def test_spread_is_the_sample_std():
    assert spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)  # ddof=0 would give 0.816
    assert np.isnan(spread([4.0]))


def test_macro_f1_averages_over_every_class_of_the_dataset():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)  # classes 5 and 6 never occur
    expected = f1_score(truth, pred, labels=range(7), average="macro", zero_division=0)
    assert macro_f1(truth, pred, 7) == pytest.approx(expected)
    assert macro_f1(truth, pred, 7) < f1_score(truth, pred, average="macro")  # not the 5 present
    probs = np.eye(7)[pred]
    assert metrics("classification", probs, truth)["macro_f1"] == pytest.approx(expected)


def test_identical_methods_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    truth = rng.normal(100, 20, 300)
    pred = truth + rng.normal(0, 10, (3, 300))
    d = paired_difference(truth, np.arange(300) // 10, pred, pred.copy(), rmse, resamples=200)
    assert (d.estimate, d.low, d.high) == (0.0, 0.0, 0.0) and not d.excludes_zero


def test_a_clearly_better_method_gets_an_interval_below_zero_for_rmse():
    rng = np.random.default_rng(2)
    truth = rng.normal(100, 20, 400)
    good, bad = truth + rng.normal(0, 5, (3, 400)), truth + rng.normal(0, 15, (3, 400))
    d = paired_difference(truth, np.arange(400) // 8, good, bad, rmse, resamples=300)
    assert d.low <= d.estimate <= d.high < 0 and d.excludes_zero
    assert d.estimate == pytest.approx(
        np.mean([rmse(truth, p) for p in good]) - np.mean([rmse(truth, p) for p in bad])
    )


def test_cluster_bootstrap_is_wider_than_a_sample_bootstrap_when_errors_share_a_site():
    rng = np.random.default_rng(3)
    sites = np.repeat(np.arange(20), 20)
    truth = rng.normal(100, 20, len(sites))
    site_bias = rng.normal(0, 10, 20)[sites]  # model a errs per site, model b per sample
    a = (truth + site_bias + rng.normal(0, 2, len(sites)))[None]
    b = (truth + rng.normal(0, 8, len(sites)))[None]
    by_site = paired_difference(truth, sites, a, b, rmse, resamples=400)
    by_sample = paired_difference(truth, np.arange(len(sites)), a, b, rmse, resamples=400)
    assert by_site.estimate == by_sample.estimate
    assert by_site.high - by_site.low > 1.5 * (by_sample.high - by_sample.low)


def test_headline_direction():
    assert headline("regression")[0::2] == ("rmse", -1)
    name, metric, sign = headline("classification", 3)
    assert (name, sign) == ("macro_f1", 1) and metric(np.array([0, 1]), np.array([0, 1])) == pytest.approx(
        2 / 3
    )


def test_best_guided_student_is_chosen_among_every_guided_row_on_validation():
    from training.benchmark import best_guided, guided_labels

    spec = {"rows": {"single": {"method": "single"}, "kd": {"method": "kd"},
                     "kd (RF teacher)": {"method": "kd", "set": ["method_args.teacher=oof_rf"]}}}
    rows = [{"dataset": "lfmc", "method": label, "modality": "S2", "seed": s,
             "val": {"rmse": val + s}, "test": {"rmse": test}}
            for label, val, test in (("single", 30.0, 29.0), ("kd", 28.0, 26.0),
                                     ("kd (RF teacher)", 27.0, 28.0))
            for s in (0, 1)]
    # a labelled row of a guided method counts, and the test split never decides
    assert guided_labels(spec) == ["kd", "kd (RF teacher)"]
    assert best_guided(rows, "lfmc", "S2", guided_labels(spec)) == "kd (RF teacher)"
