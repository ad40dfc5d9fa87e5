"""The mixed transfer set on the real data: pairs stay in one teacher fold, each pool row is
labelled by the fold teacher that never saw either sample, masks stay binary, the task loss never
reads a pool row, and every epoch sees each labelled sample once plus fresh pool rows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from training import teachers
from training.config import dataset_method_config
from training.datasets import load_dataset
from training.methods.kd import TEACHER_OUT
from training.models import mask_tensor
from training.run import build_module, fit, loader, split_data
from training.transfer import MIXED_TARGET, POOL, POOL_FACTOR, EpochSampler, mix, pairs

K = 3
SMALL_RF = 20


@pytest.fixture(scope="module")
def lfmc(data_dir):
    return split_data(load_dataset("lfmc", data_dir), seed=0)


@pytest.fixture(scope="module")
def crop_type(data_dir):
    return split_data(load_dataset("crop_type", data_dir), seed=0)


def test_pairs_share_a_fold_and_repeat_with_the_seed(lfmc):
    fold = teachers.folds(lfmc, K, seed=0)
    first, second, weight = pairs(fold, 5000, seed=0)
    np.testing.assert_array_equal(fold[first], fold[second])
    assert (weight >= 0).all() and (weight <= 1).all() and 0.45 < weight.mean() < 0.55
    assert len(np.unique(first)) > 0.9 * len(fold), "pairs reach nearly every training sample"
    again = pairs(fold, 5000, seed=0)
    for a, b in zip((first, second, weight), again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(pairs(fold, 5000, seed=1)[0], first)


def test_mixed_rows(crop_type):
    train, info = crop_type.arrays["train"], crop_type.data.info
    first, second = np.arange(0, 40), np.arange(40, 80)
    weight = np.linspace(0, 1, 40)
    out = mix(train, first, second, weight, info.task, info.n_outputs)
    mask = mask_tensor("S2")
    both = train[mask][first] * train[mask][second]
    np.testing.assert_array_equal(out[mask], both)  # available only where both samples are
    assert set(np.unique(out[mask])) <= {0.0, 1.0}
    assert (out["S2"][both == 0] == 0).all(), "a step missing in either sample is a missing step"
    keep = both == 1
    w = weight[:, None, None]
    expected = (w * train["S2"][first] + (1 - w) * train["S2"][second])[keep]
    np.testing.assert_allclose(out["S2"][keep], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["month"], w * train["month"][first] + (1 - w) * train["month"][second],
                               rtol=1e-6, atol=1e-6)
    target = out[MIXED_TARGET]
    np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-6)
    assert target[0, train["y"][second[0]]] == pytest.approx(1.0)  # weight 0: the second's label
    assert target[-1, train["y"][first[-1]]] == pytest.approx(1.0)
    assert (out[POOL] == 1).all()


def test_regression_targets_mix_in_standardised_units(lfmc):
    train, info = lfmc.arrays["train"], lfmc.data.info
    first, second, weight = np.array([0, 1]), np.array([2, 3]), np.array([0.25, 0.5])
    out = mix(train, first, second, weight, info.task, 1, lfmc.target_mean, lfmc.target_std)
    y = weight * train["y"][first] + (1 - weight) * train["y"][second]
    np.testing.assert_allclose(out[MIXED_TARGET][:, 0], (y - lfmc.target_mean) / lfmc.target_std, rtol=1e-5)


def test_pool_rows_are_labelled_by_the_teacher_of_their_fold(lfmc, monkeypatch):
    """A pool row that is almost all of its first sample gets that sample's out-of-fold output: the
    forest that labels it never saw the sample (a forest that did would give its in-sample fit)."""
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    size = 4 * len(lfmc.splits["train"])
    oof = teachers.oof_targets(lfmc, "rf", K, seed=0, mixed=teachers.pool(lfmc, K, 0, size))
    assert oof.pool_output.shape == (size, 1) and np.isfinite(oof.pool_output).all()
    first, _, weight = pairs(oof.fold, size, seed=0)
    near = weight > 0.999
    assert near.sum() >= 3
    same = np.isclose(oof.pool_output[near, 0], oof.output[first[near], 0], atol=1e-6)
    assert same.mean() >= 0.8, "pool rows next to a sample must get its out-of-fold output"


def test_fit_appends_the_pool_and_the_task_loss_ignores_it(crop_type, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    sets = ["net.filters=8", "max_epochs=1", "method_args.teacher=oof_rf", f"method_args.folds={K}"]
    sets.append("mixup=1")
    cfg = replace(dataset_method_config("crop_type", "kd", sets), modalities=["S2"])
    prep = teachers.with_teacher_targets(cfg, crop_type, tmp_path)
    n = len(crop_type.splits["train"])
    train = prep.arrays["train"]
    assert len(train["y"]) == (1 + POOL_FACTOR) * n and train[POOL].sum() == POOL_FACTOR * n
    np.testing.assert_allclose(train[TEACHER_OUT].sum(1), 1.0, rtol=1e-5)  # probabilities on every row
    assert POOL not in prep.arrays["val"] and len(prep.arrays["val"]["y"]) == len(crop_type.splits["val"])

    module = build_module(cfg, prep).eval()  # no dropout: two calls must differ only by their labels
    rows = np.r_[0:16, n : n + 16]
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in train.items()}
    loss, parts = module.training_loss(batch)
    assert set(parts) == {"task", "soft"} and bool(loss.isfinite())
    shuffled = dict(batch, y=batch["y"].clone())
    shuffled["y"][16:] = (shuffled["y"][16:] + 1) % crop_type.data.info.n_outputs
    assert module.training_loss(shuffled)[1]["task"] == parts["task"], "pool rows have no label"

    fit(cfg, crop_type, teacher_cache=tmp_path)  # trains end to end with the cached outputs


def test_single_learns_the_mixed_labels(lfmc):
    cfg = replace(dataset_method_config("lfmc", "single", ["net.filters=8", "mixup=1"]), modalities=["S2"])
    prep = teachers.with_teacher_targets(cfg, lfmc)
    module = build_module(cfg, prep).eval()
    train, n = prep.arrays["train"], len(lfmc.splits["train"])
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[np.r_[0:8, n : n + 8]])) for k, v in train.items()}
    _, parts = module.training_loss(batch)
    assert set(parts) == {"task", "mixed"}
    out = module.model(batch)[8:]
    expected = torch.nn.functional.mse_loss(out, batch[MIXED_TARGET][8:])
    assert float(parts["mixed"]) == pytest.approx(float(expected), rel=1e-5)


def test_epoch_draws_fresh_pool_rows(lfmc):
    sampler = EpochSampler(100, 1000, 50, torch.Generator().manual_seed(0))
    one, two = list(sampler), list(sampler)
    assert len(one) == len(sampler) == 150
    for epoch in (one, two):
        assert sorted(i for i in epoch if i < 100) == list(range(100))
        drawn = [i for i in epoch if i >= 100]
        assert len(set(drawn)) == 50 and max(drawn) < 1100
    assert {i for i in one if i >= 100} != {i for i in two if i >= 100}
    arrays = {"y": np.zeros(130, np.float32), POOL: np.r_[np.zeros(10), np.ones(120)].astype(np.float32)}
    batches = list(loader(arrays, 5, True, 0, mixup=2.0))
    assert sum(len(b["y"]) for b in batches) == 30 and sum(int(b[POOL].sum()) for b in batches) == 20


def test_mixup_is_refused_where_it_means_nothing(lfmc):
    dis2 = dataset_method_config("lfmc", "dis2", ["mixup=1"])
    with pytest.raises(ValueError, match="mixup is an option of single and kd"):
        teachers.with_teacher_targets(dis2, lfmc)
    with pytest.raises(ValueError, match="pool rows per labelled sample"):
        dataset_method_config("lfmc", "single", [f"mixup={POOL_FACTOR + 1}"])
