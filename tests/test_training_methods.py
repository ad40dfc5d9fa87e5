"""Every method trains a few epochs on real data and its training loss falls."""

from __future__ import annotations

from dataclasses import replace

import lightning as L  # noqa: N812
import pytest
import torch

from training.config import dataset_method_config
from training.datasets import load_dataset
from training.export import check_student
from training.methods import METHODS
from training.methods.dis2 import DIS2Module
from training.methods.losses import dice_loss, weighted_cross_entropy
from training.methods.mdico import MDiCoModule
from training.run import build_module, fit, split_data

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


def _module(dataset, method, prep, sets, modalities=("S2",)):
    cfg = replace(dataset_method_config(dataset, method, [*SMALL, *sets]), modalities=list(modalities))
    return build_module(cfg, prep)


def test_dis2_full_branch_shares_the_available_encoder_and_exports_without_it(prepared):
    prep = prepared["crop_type"]
    module, losses = _history(
        replace(
            dataset_method_config(
                "crop_type", "dis2", [*SMALL, "max_epochs=2", "method_args.warmup_epochs=0"]
            ),
            modalities=["S2"],
        ),
        prep,
        None,  # the default (DIS2) variant trains its full-modality branch online: no teacher
    )
    assert not module.needs_teacher and all(loss > 0 for loss in losses)
    assert module.missing_input.modalities == ("S1", "weather", "DEM")
    batch = {k: torch.from_numpy(v[:32]) for k, v in prep.arrays["train"].items()}
    module.train()
    _, parts = module.training_loss(batch)
    assert {"available", "teacher", "distill"} <= set(parts)
    module.zero_grad()
    parts["teacher"].backward()  # the full branch's loss trains the student's available encoder
    assert module.student.available.blocks[0][0].weight.grad.abs().sum() > 0
    assert module.student.compensation.blocks[0][0].weight.grad is None
    check_student(module.predictor())  # the missing-modality encoder stays out of the export
    old = _module("crop_type", "dis2", prep, ["method_args.shared_encoder=false"])
    assert old.needs_teacher and DIS2Module.wants_teacher(shared_encoder=False)
    with pytest.raises(ValueError, match="needs a trained teacher"):
        fit(
            replace(dataset_method_config("crop_type", "dis2", [*SMALL, "method_args.shared_encoder=false"])),
            prep,
        )


def test_dis2_classification_loss_is_weighted_ce_plus_dice(prepared):
    prep = prepared["crop_type"]
    module = _module("crop_type", "dis2", prep, [])
    plain = _module("crop_type", "dis2", prep, ["method_args.dice=false"])
    out = torch.randn(16, 7)
    batch = {"y": torch.from_numpy(prep.arrays["train"]["y"][:16])}
    assert module.loss(out, batch).item() == pytest.approx(
        (weighted_cross_entropy(out, batch["y"]) + dice_loss(out, batch["y"])).item()
    )
    assert plain.loss(out, batch).item() == pytest.approx(
        torch.nn.functional.cross_entropy(out, batch["y"]).item()
    )


def test_mdico_averages_its_loss_terms_and_projects_per_modality(prepared):
    prep = prepared["lfmc"]
    batch = {k: torch.from_numpy(v[:64]) for k, v in prep.arrays["train"].items()}
    totals = {}
    for reduction, weight in (("mean", 12), ("sum", 1)):
        torch.manual_seed(0)
        module = _module(
            "lfmc",
            "mdico",
            prep,
            [f"method_args.reduction={reduction}", f"method_args.contrast_weight={weight}"],
        )
        module.eval()
        with torch.no_grad():
            totals[reduction] = module.training_loss(batch)
    (mean_total, mean), (sum_total, summed) = totals["mean"], totals["sum"]
    assert float(sum_total) == pytest.approx(float(sum(summed.values())), rel=1e-5)
    for key, members in (("task", 4), ("aux", 8), ("modality", 8), ("contrast", 6)):
        assert float(mean[key]) == pytest.approx(float(summed[key]) / members, rel=1e-5), key
    assert float(mean_total) == pytest.approx(
        float(mean["task"] + mean["aux"] + mean["modality"] + 12 * mean["contrast"]), rel=1e-5
    )
    per_modality = _module("lfmc", "mdico", prep, [])
    assert per_modality.projection["S1"] is not per_modality.projection["S2"]
    shared = _module("lfmc", "mdico", prep, ["method_args.projection=shared"])
    assert shared.projection["S1"] is shared.projection["S2"]


def test_two_encoder_single_has_twice_the_encoders(prepared):
    prep = prepared["lfmc"]
    one, two = (_module("lfmc", "single", prep, [f"method_args.encoders={n}"]) for n in (1, 2))
    count = lambda m: sum(p.numel() for p in m.model.parameters())  # noqa: E731
    assert len(two.model.extra) == 1 and 1.9 * count(one) < count(two) < 2.1 * count(one)
    batch = {k: torch.from_numpy(v[:8]) for k, v in prep.arrays["train"].items()}
    assert two.predictor()(batch["S2"]).shape == (8, 1)
