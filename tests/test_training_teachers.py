"""Out-of-fold teachers on the real data: no sample is predicted by a teacher that saw its group,
validation and test get no teacher output, the cache round-trips, and kd distils from it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.definitions import Task
from training import teachers
from training.config import dataset_method_config
from training.datasets import load_dataset
from training.export import export_run
from training.methods.kd import TEACHER_OUT
from training.methods.rf import forest
from training.run import evaluate, fit, load_run, save_run, split_data

K = 3
SMALL_RF = 20  # trees: enough for distinct fold outputs, fast on a shared CPU


@pytest.fixture(scope="module")
def lfmc(data_dir):
    return split_data(load_dataset("lfmc", data_dir), seed=0)


def test_oof_never_from_a_fold_holding_the_group(lfmc, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    oof = teachers.oof_targets(lfmc, "rf", K, seed=0)
    train = lfmc.splits["train"]
    groups = lfmc.data.groups[train]
    np.testing.assert_array_equal(oof.index, train)
    assert sorted(np.unique(oof.fold)) == list(range(K))
    for f in range(K):
        assert not set(groups[oof.fold == f]) & set(groups[oof.fold != f]), f"fold {f} shares a site"

    # fold 0's outputs are those of a forest fitted on the other folds only
    x, y = teachers.rf_inputs(lfmc, "train"), lfmc.arrays["train"]["y"]
    params = teachers.rf_params(lfmc, seed=0)
    held, rest = oof.fold == 0, oof.fold != 0
    refit = forest(Task.REGRESSION, 0, SMALL_RF, 1, **params).fit(x[rest], y[rest]).predict(x[held])
    expected = (refit - lfmc.target_mean) / lfmc.target_std
    np.testing.assert_allclose(oof.output[held, 0], expected, rtol=1e-9, atol=1e-9)

    # a forest that saw every site fits the training split far closer than the out-of-fold outputs
    inside = forest(Task.REGRESSION, 0, SMALL_RF, 1, **params).fit(x, y).predict(x)
    oof_rmse = np.sqrt(np.mean((oof.output[:, 0] * lfmc.target_std + lfmc.target_mean - y) ** 2))
    assert oof_rmse > 1.5 * np.sqrt(np.mean((inside - y) ** 2))


def test_only_training_samples_get_teacher_outputs(lfmc, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    cfg = dataset_method_config("lfmc", "kd", ["method_args.teacher=oof_rf", f"method_args.folds={K}"])
    prep = teachers.with_teacher_targets(cfg, lfmc)
    out = prep.arrays["train"][TEACHER_OUT]
    assert out.shape == (len(lfmc.splits["train"]), 1) and np.isfinite(out).all()
    assert TEACHER_OUT not in prep.arrays["val"] and TEACHER_OUT not in prep.arrays["test"]
    assert TEACHER_OUT not in lfmc.arrays["train"], "the caller's split data must stay unchanged"
    live = dataset_method_config("lfmc", "kd")
    assert teachers.with_teacher_targets(live, lfmc) is lfmc


def test_cache_round_trip(lfmc, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    first = teachers.oof_targets(lfmc, "rf", K, seed=0, cache=tmp_path)
    assert len(list(tmp_path.glob("lfmc_seed0_rf_k3_*.npz"))) == 1

    def no_refit(*args, **kwargs):
        raise AssertionError("a cached teacher was fitted again")

    monkeypatch.setattr(teachers, "forest", no_refit)
    again = teachers.oof_targets(lfmc, "rf", K, seed=0, cache=tmp_path)
    np.testing.assert_array_equal(again.output, first.output)
    np.testing.assert_array_equal(again.fold, first.fold)
    np.testing.assert_array_equal(again.index, first.index)
    with pytest.raises(AssertionError, match="fitted again"):  # another seed is another file
        teachers.oof_targets(lfmc, "rf", K, seed=1, cache=tmp_path)


def test_ensemble_is_the_mean_of_rf_and_network(lfmc, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    cfg = dataset_method_config("lfmc", "teacher", ["net.filters=8", "max_epochs=1"])
    ens = teachers.oof_targets(lfmc, "ensemble", 2, seed=0, cfg=cfg, cache=tmp_path)
    rf, net = (
        teachers.oof_targets(lfmc, kind, 2, seed=0, cfg=cfg, cache=tmp_path) for kind in ("rf", "network")
    )
    assert len(list(tmp_path.glob("*.npz"))) == 2, "the ensemble reuses the cached rf and network outputs"
    np.testing.assert_allclose(ens.output, (rf.output + net.output) / 2, rtol=1e-12)
    np.testing.assert_array_equal(rf.fold, net.fold)  # both kinds hold out the same sites
    assert np.isfinite(net.output).all() and not np.allclose(net.output, rf.output, atol=1e-3)


def test_unknown_teacher_is_refused(lfmc):
    cfg = dataset_method_config("lfmc", "kd", ["method_args.teacher=oof_svm"])
    with pytest.raises(ValueError, match="oof_rf"):
        teachers.with_teacher_targets(cfg, lfmc)
    dis2 = dataset_method_config("lfmc", "dis2", ["method_args.teacher=oof_rf"])
    with pytest.raises(ValueError, match="kd option"):  # not silently ignored by another method
        teachers.with_teacher_targets(dis2, lfmc)


def test_kd_from_oof_rf_trains_and_exports(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(teachers, "TREES", SMALL_RF)
    prep = split_data(load_dataset("crop_type", data_dir), seed=0)
    sets = ["net.filters=8", "max_epochs=1", "method_args.teacher=oof_rf", f"method_args.folds={K}"]
    cfg = replace(dataset_method_config("crop_type", "kd", sets), modalities=["S2"])
    oof = teachers.oof_targets(prep, "rf", K, seed=0, cache=tmp_path / "cache")
    np.testing.assert_allclose(oof.output.sum(1), 1.0, rtol=1e-9)  # probabilities over every class

    module, trainer = fit(cfg, prep, teacher_cache=tmp_path / "cache")  # no live teacher needed
    assert not module.needs_teacher and not hasattr(module, "teacher")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1, "fit must reuse the cached outputs"
    loss, parts = module.training_loss(fit_batch(prep, oof))
    assert set(parts) == {"task", "soft"} and bool(loss.isfinite())

    run_dir = save_run(tmp_path / "run", module, trainer, cfg, prep, {"test": evaluate(module, prep, "test")})
    loaded, run = load_run(run_dir)
    card, diff = export_run(loaded, run, prep, tmp_path / "kd_oof_rf.onnx", "kd_oof_rf")
    assert [i.modality for i in card.inputs] == ["S2"]
    assert read_card(tmp_path / "kd_oof_rf.onnx") == card
    assert diff < 1e-4


def fit_batch(prep, oof):
    """The first 32 training samples as a batch, with their stored teacher outputs."""
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[:32])) for k, v in prep.arrays["train"].items()}
    batch[TEACHER_OUT] = torch.from_numpy(oof.output[:32].astype(np.float32))
    return batch
