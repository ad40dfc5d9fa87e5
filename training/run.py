"""One training run: splits, card statistics, tensors in memory, Lightning fit with early
stopping on the validation split, and metrics of the exported predictor."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L  # noqa: N812 - the usual Lightning alias
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from torch.utils.data import DataLoader

from eo_missing_qgis.core.card import InputSpec
from eo_missing_qgis.core.context import encode_latlon, encode_month, step_available
from eo_missing_qgis.core.definitions import MODALITIES, ContextKind, Task

from .datasets import EODataset
from .datasets.base import SPLITS, input_spec
from .datasets.modalities import check_modalities
from .methods import METHODS, MethodModule
from .models import Predictor, check_context, context_specs, mask_tensor
from .models.inputs import ENCODINGS
from .transfer import POOL, POOL_FACTOR, EpochSampler


@dataclass
class RunConfig:
    """Everything that defines a run (the YAML configs map onto these fields)."""

    dataset: str = "lfmc"
    method: str = "single"
    modalities: list[str] = field(default_factory=lambda: ["S2"])
    seed: int = 0
    net: dict = field(default_factory=lambda: {"filters": 128, "layers": 2, "kernel": 5, "dropout": 0.2})
    method_args: dict = field(default_factory=dict)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 8
    val_fraction: float = 0.2
    #: ``grouped`` (by site or location cluster) or ``random`` (the leaky earlier splits, kept only
    #: to report the leak's effect): see :data:`training.datasets.base.SPLITS`.
    split: str = "grouped"
    #: Context inputs of every network (``mask``, ``month``, ``latlon``; :mod:`training.models.inputs`),
    #: computed as the plugin computes them and declared in the exported card.
    context: list[str] = field(default_factory=list)
    #: Probability that a training sample's student input is thinned in time (``MethodModule.thin``);
    #: > 0 exports a card that accepts a single month (``time.min_steps`` 1).
    time_dropout: float = 0.0
    #: Mixed pool rows (:mod:`training.transfer`) drawn per labelled sample each epoch; 0: none.
    #: ``single`` learns their mixed labels, ``kd`` its teacher's outputs on them.
    mixup: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        cfg = cls(**data)
        if cfg.split not in SPLITS:
            raise ValueError(f"unknown split {cfg.split!r}; choose one of {', '.join(SPLITS)}")
        if cfg.method not in (*METHODS, "rf"):
            raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}, rf")
        cfg.modalities = list(MODALITIES if cfg.method == "teacher" else check_modalities(cfg.modalities))
        cfg.context = check_context(cfg.context)
        if not 0.0 <= cfg.time_dropout <= 1.0:
            raise ValueError(f"time_dropout is a probability (0-1), not {cfg.time_dropout}")
        if not 0.0 <= cfg.mixup <= POOL_FACTOR:
            raise ValueError(f"mixup is pool rows per labelled sample (0-{POOL_FACTOR}), not {cfg.mixup}")
        return cfg


@dataclass
class SplitData:
    """A dataset split for one seed, with the card inputs and the in-memory network inputs."""

    data: EODataset
    splits: dict[str, np.ndarray]
    specs: dict[str, InputSpec]
    arrays: dict[str, dict[str, np.ndarray]]
    target_mean: float
    target_std: float


def split_data(data: EODataset, seed: int, val_fraction: float = 0.2, split: str = "grouped") -> SplitData:
    splits = data.splits(seed, val_fraction, split)
    specs = data.input_specs(splits["train"])
    arrays = {name: {**data.arrays(idx, specs), **context_arrays(data, idx)} for name, idx in splits.items()}
    y = data.target[splits["train"]].astype(np.float64)
    regression = data.info.task == Task.REGRESSION
    return SplitData(
        data,
        splits,
        specs,
        arrays,
        float(y.mean()) if regression else 0.0,
        float(y.std()) if regression else 1.0,
    )


def context_arrays(data: EODataset, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The context tensors of samples ``idx``, by their card tensor names, computed with the
    plugin's own functions: every modality's mask (from the NaNs of its physical values), and the
    month and location when the dataset has them."""
    out = {mask_tensor(m): step_available(data.physical[m][idx], band_axis=2).astype(np.float32)
           for m in MODALITIES}
    if data.months is not None:
        out[str(ContextKind.MONTH)] = encode_month(data.months[idx], ENCODINGS[ContextKind.MONTH])
    if data.latlon is not None:
        lat, lon = data.latlon[idx, 0], data.latlon[idx, 1]
        out[str(ContextKind.LATLON)] = encode_latlon(lat, lon, ENCODINGS[ContextKind.LATLON])
    return out


def specs_from_dict(stats: dict[str, dict]) -> dict[str, InputSpec]:
    return {m: input_spec(m, s["mean"], s["std"]) for m, s in stats.items()}


class _Gather:
    """Collate that indexes whole in-memory tensors at once (no per-sample Python work)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __call__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        i = torch.as_tensor(idx)
        return {k: v[i] for k, v in self.tensors.items()}


def _tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def loader(
    arrays: dict[str, np.ndarray], batch_size: int, shuffle: bool, seed: int, mixup: float = 0.0
) -> DataLoader:
    """Batches of ``arrays``; with a mixed pool appended (:mod:`training.transfer`), every labelled
    sample plus ``mixup`` pool rows per labelled sample, drawn afresh each epoch."""
    tensors = _tensors(arrays)
    generator = torch.Generator().manual_seed(seed)
    n = len(arrays["y"])
    sampler = None
    if POOL in arrays:
        labelled = int((arrays[POOL] < 0.5).sum())
        sampler = EpochSampler(labelled, n - labelled, round(mixup * labelled), generator)
        n = len(sampler)
    return DataLoader(
        range(len(arrays["y"])),
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        collate_fn=_Gather(tensors),
        generator=None if sampler else generator,
        drop_last=shuffle and n > batch_size,
    )


class KeepBest(L.Callback):
    """Keeps the weights of the epoch with the lowest validation loss and restores them at the end."""

    def __init__(self):
        self.best, self.state = float("inf"), None

    def on_validation_epoch_end(self, trainer, module):
        value = trainer.callback_metrics.get("val_loss")
        if value is not None and float(value) < self.best:
            self.best, self.state = float(value), copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer, module):
        if self.state is not None:
            module.load_state_dict(self.state)


def build_module(cfg: RunConfig, prep: SplitData) -> MethodModule:
    info = prep.data.info
    have = prep.arrays["train"]
    lacking = [c.tensor for c in context_specs(cfg.context, MODALITIES) if c.tensor not in have]
    if lacking:
        raise ValueError(f"context {cfg.context} needs {', '.join(lacking)}, which dataset {prep.data.name} "
                         "does not have (no months or sample locations)")
    # plain strings, not vocabulary enums: checkpoints load with torch's weights-only unpickler
    return METHODS[cfg.method](
        task=str(info.task),
        n_outputs=info.n_outputs,
        steps=prep.data.steps,
        channels={str(m): len(s.bands) for m, s in prep.specs.items()},
        modalities=[str(m) for m in cfg.modalities],
        net=cfg.net,
        context=list(cfg.context),
        time_dropout=cfg.time_dropout,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        target_mean=prep.target_mean,
        target_std=prep.target_std,
        **cfg.method_args,
    )


def fit(
    cfg: RunConfig,
    prep: SplitData,
    teacher_state: dict | None = None,
    *,
    progress: bool = False,
    root: Path | None = None,
    callbacks_extra: list | None = None,
    teacher_cache: Path | None = None,
    **trainer_args,
) -> tuple[MethodModule, L.Trainer]:
    """Train ``cfg`` on ``prep`` (seeded, deterministic); returns the module with its best weights.
    A method distilling from stored teacher outputs gets them in its training batches, cached in
    ``teacher_cache`` (default: ``root/teacher_targets``)."""
    from .teachers import with_teacher_targets  # it fits teachers with this function

    prep = with_teacher_targets(cfg, prep, teacher_cache or (root / "teacher_targets" if root else None))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, prep)
    if module.needs_teacher:
        if teacher_state is None:
            raise ValueError(f"method {cfg.method} needs a trained teacher (fit one with method 'teacher')")
        module.load_teacher(teacher_state)
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EarlyStopping("val_loss", patience=cfg.patience), KeepBest(), *(callbacks_extra or [])],
        default_root_dir=str(root) if root else None,
        **{"accelerator": "cpu", "devices": 1, **trainer_args},
    )
    trainer.fit(
        module,
        loader(prep.arrays["train"], cfg.batch_size, True, cfg.seed, cfg.mixup),
        loader(prep.arrays["val"], 4096, False, cfg.seed),
    )
    return module, trainer


def predict(predictor: Predictor, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Predictor outputs (probabilities, or physical regression values) for numpy inputs."""
    predictor.eval()
    with torch.no_grad():
        out = predictor(*(torch.from_numpy(arrays[m]) for m in predictor.names))
    return out.numpy()


def metrics(task: str, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """RMSE and R² (physical units) or macro-F1 and accuracy; the first is the headline metric."""
    if task == Task.REGRESSION:
        pred = output.reshape(-1)
        return {"rmse": float(np.sqrt(mean_squared_error(target, pred))), "r2": float(r2_score(target, pred))}
    pred = output.argmax(1)
    return {
        "macro_f1": float(  # over every class of the dataset, present in this split or not
            f1_score(target, pred, labels=range(output.shape[1]), average="macro", zero_division=0)
        ),
        "accuracy": float(accuracy_score(target, pred)),
    }


def mapped_samples(data: EODataset, idx: np.ndarray, modalities) -> np.ndarray:
    """Which samples ``idx`` the plugin maps from ``modalities``: those with one step at least
    where every band of every modality has a value. The others (e.g. a patch without the 10 m S2
    bands, or S2 cloudy all year) are nodata on a map, so no student is scored on them."""
    return np.logical_and.reduce(
        [step_available(data.physical[m][idx], band_axis=2).any(axis=1) for m in modalities]
    )


def evaluate(module: MethodModule, prep: SplitData, split: str) -> dict[str, float]:
    """Metrics of ``module`` on ``split``: a student's (the card's figures) on the samples the plugin
    maps from its inputs (:func:`mapped_samples`), the teacher's on all."""
    arrays = prep.arrays[split]
    out = predict(module.predictor(), arrays)
    if isinstance(module, METHODS["teacher"]):
        return metrics(module.task, out, arrays["y"])
    mapped = mapped_samples(prep.data, prep.splits[split], module.modalities)
    return metrics(module.task, out[mapped], arrays["y"][mapped])


def save_run(
    out: Path,
    module: MethodModule,
    trainer: L.Trainer,
    cfg: RunConfig,
    prep: SplitData,
    scores: dict[str, dict[str, float]],
) -> Path:
    """``model.ckpt`` (Lightning) and ``run.json`` (config, card statistics, metrics)."""
    out.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(out / "model.ckpt")
    run = {
        "config": asdict(cfg),
        "stats": {m: {"mean": list(s.mean), "std": list(s.std)} for m, s in prep.specs.items()},
        "metrics": scores,
        "steps": prep.data.steps,
    }
    if trainer.is_global_zero:
        (out / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    return out


def load_run(run_dir: Path) -> tuple[MethodModule, dict]:
    """The module (best weights) and ``run.json`` of a saved run."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no run.json); train one with `fit --out`")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    module = METHODS[run["config"]["method"]].load_from_checkpoint(run_dir / "model.ckpt", map_location="cpu")
    module.eval()
    return module, run
