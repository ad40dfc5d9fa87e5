"""Every method trains a few epochs on real data and its training loss falls."""

from __future__ import annotations

from dataclasses import replace

import lightning as L  # noqa: N812
import pytest

from training.config import dataset_method_config
from training.datasets import load_dataset
from training.methods import METHODS
from training.methods.mdico import MDiCoModule
from training.run import fit, split_data

SMALL = ["net.filters=16", "max_epochs=4", "patience=10", "lr=0.003"]


class LossHistory(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train_loss"]))


@pytest.fixture(scope="module")
def prepared(data_dir):
    return {name: split_data(load_dataset(name, data_dir), seed=0) for name in ("lfmc", "crop_type")}


@pytest.fixture(scope="module")
def teachers(prepared):
    return {
        name: fit(dataset_method_config(name, "teacher", SMALL), prep)[0].model.state_dict()
        for name, prep in prepared.items()
    }


def _history(cfg, prep, teacher_state):
    history = LossHistory()
    module, _ = fit(cfg, prep, teacher_state, callbacks_extra=[history])
    return module, history.losses


@pytest.mark.parametrize(
    ("method", "dataset"),
    [
        ("single", "crop_type"),
        ("teacher", "crop_type"),
        ("kd", "crop_type"),
        ("mdico", "crop_type"),
        ("dis2", "crop_type"),
        ("kd", "lfmc"),
        ("dis2", "lfmc"),
    ],
)
def test_loss_falls(method, dataset, prepared, teachers):
    overrides = (
        [*SMALL, "method_args.warmup_epochs=0", "method_args.ramp_epochs=1"] if method == "dis2" else SMALL
    )
    cfg = replace(dataset_method_config(dataset, method, overrides), modalities=["S2"])
    if method == "teacher":
        cfg = replace(cfg, modalities=["S1", "S2", "weather", "DEM"])
    module, losses = _history(cfg, prepared[dataset], teachers[dataset])
    assert len(losses) == 4
    assert losses[-1] < losses[0], losses
    assert isinstance(module, METHODS[method])


@pytest.mark.parametrize("where", ["unused", "shared"])
def test_mdico_second_modality_head_switch(where, prepared):
    prep = prepared["crop_type"]
    cfg = replace(
        dataset_method_config(
            "crop_type", "mdico", [*SMALL, "max_epochs=1", f"method_args.second_modality_head_on={where}"]
        ),
        modalities=["S1"],
    )
    module, losses = _history(cfg, prep, None)
    assert module.hparams.second_modality_head_on == where and all(loss > 0 for loss in losses)


def test_mdico_rejects_unknown_switch_and_guided_methods_need_a_teacher(prepared):
    prep = prepared["lfmc"]
    with pytest.raises(ValueError, match="second_modality_head_on"):
        fit(
            dataset_method_config("lfmc", "mdico", [*SMALL, "method_args.second_modality_head_on=both"]), prep
        )
    with pytest.raises(ValueError, match="needs a trained teacher"):
        fit(dataset_method_config("lfmc", "kd", SMALL), prep)
    assert MDiCoModule.method == "mdico"
