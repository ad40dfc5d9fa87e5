"""A mixed transfer set (function matching, Beyer et al. 2022): pairs of training samples of one
teacher fold, mixed with a random weight. A distilling student copies its teacher on these points
as well as on the few hundred labelled ones; the ``single`` control learns the same points with
the same mix of their labels (mixup, Zhang et al. 2018), so the two see identical inputs.

Sensor values and context mix linearly (standardised values, month sin/cos, location); a step
counts as available only where both samples have it, and its values are 0 (the band mean, as
for any missing step) where it is not. Both samples come from one fold, so the out-of-fold
teacher of that fold never saw either of them (:func:`training.teachers.oof_targets`).

:func:`training.run.fit` appends the pool after the labelled samples (flagged in :data:`POOL`)
and draws ``mixup`` pool rows per labelled sample each epoch (:class:`EpochSampler`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from eo_missing_qgis.core.definitions import MODALITIES, Task

from .models import mask_tensor

#: Batch key: 1 on a pool row, 0 on a labelled sample.
POOL = "pool"
#: Batch key of a pool row's mixed label: probabilities, or the standardised regression value.
MIXED_TARGET = "mixed_target"
#: Pool rows per labelled sample (the pool each epoch draws from).
POOL_FACTOR = 10


def pairs(fold: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, weight): ``size`` pairs of training positions in one fold each, and the
    weight of the first (uniform in 0-1). Seeded, so a split and seed always give the same pool."""
    rng = np.random.default_rng([seed, 20221])
    first = rng.integers(0, len(fold), size)
    members = {f: np.flatnonzero(fold == f) for f in np.unique(fold)}
    second = np.empty(size, np.int64)
    for f, idx in members.items():
        rows = np.flatnonzero(fold[first] == f)
        second[rows] = idx[rng.integers(0, len(idx), len(rows))]
    return first, second, rng.random(size)


def mix(
    arrays: dict[str, np.ndarray],
    first: np.ndarray,
    second: np.ndarray,
    weight: np.ndarray,
    task: str,
    n_outputs: int,
    target_mean: float = 0.0,
    target_std: float = 1.0,
) -> dict[str, np.ndarray]:
    """The mixed rows (see the module docstring) of every network array, with :data:`MIXED_TARGET`
    (the labels' mix) and :data:`POOL` = 1; ``y`` is a placeholder no loss reads."""
    out = {}
    for key, a in arrays.items():
        if key == "y":
            continue
        w = weight.reshape(-1, *([1] * (a.ndim - 1))).astype(a.dtype)
        out[key] = w * a[first] + (1 - w) * a[second]
    for m in MODALITIES:
        mask = mask_tensor(m)
        if mask in arrays:
            both = arrays[mask][first] * arrays[mask][second]
            out[mask] = both
            if m in out:
                out[m] = out[m] * both[..., None].astype(out[m].dtype)
    y = arrays["y"]
    if task == Task.CLASSIFICATION:
        onehot = np.eye(n_outputs, dtype=np.float32)
        target = weight[:, None] * onehot[y[first]] + (1 - weight[:, None]) * onehot[y[second]]
    else:
        both = weight * y[first] + (1 - weight) * y[second]
        target = ((both - target_mean) / target_std)[:, None]
    out[MIXED_TARGET] = target.astype(np.float32)
    out[POOL] = np.ones(len(first), np.float32)
    out["y"] = np.zeros(len(first), y.dtype)
    return out


def append_pool(train: dict[str, np.ndarray], pool: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The labelled training arrays followed by the pool rows, every key in both (the labelled
    samples' mixed target is their own label's, never read)."""
    n = len(train["y"])
    width = pool[MIXED_TARGET].shape[1]
    labelled = dict(train, **{POOL: np.zeros(n, np.float32), MIXED_TARGET: np.zeros((n, width), np.float32)})
    missing = sorted(set(labelled) ^ set(pool))
    if missing:
        raise ValueError(f"the pool and the labelled samples differ in {missing}")
    return {k: np.concatenate([labelled[k], pool[k].astype(labelled[k].dtype)]) for k in labelled}


def pool_rows(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Bool (batch,) of the pool rows, or None for a batch without a pool."""
    return batch[POOL] > 0.5 if POOL in batch else None


class EpochSampler(Sampler[int]):
    """Every labelled sample once per epoch plus ``per_epoch`` pool rows drawn afresh, shuffled."""

    def __init__(self, n_labelled: int, n_pool: int, per_epoch: int, generator: torch.Generator):
        self.n_labelled, self.n_pool, self.per_epoch = n_labelled, n_pool, min(per_epoch, n_pool)
        self.generator = generator

    def __len__(self) -> int:
        return self.n_labelled + self.per_epoch

    def __iter__(self) -> Iterator[int]:
        drawn = self.n_labelled + torch.randperm(self.n_pool, generator=self.generator)[: self.per_epoch]
        rows = torch.cat([torch.arange(self.n_labelled), drawn])
        return iter(rows[torch.randperm(len(rows), generator=self.generator)].tolist())
