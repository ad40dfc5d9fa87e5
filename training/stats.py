"""Statistics the benchmark reports: spread over seeds, headline metrics with a fixed label set,
and paired differences between two methods with a cluster bootstrap interval.

Test samples of one site (LFMC) or location cluster (crop type, algae) are not independent, so
the interval resamples whole clusters. Both methods are scored on the *same* resample, and each
is averaged over its training seeds inside the resample: the interval covers test-set sampling
and seed noise together, without treating seeds as independent test sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eo_missing_qgis.core.definitions import Task

#: Bootstrap resamples: the 2.5 / 97.5 % quantiles move by < 0.05 of the interval width beyond this.
RESAMPLES = 2000
#: Resampling is seeded so a results table is reproducible.
BOOTSTRAP_SEED = 0


def spread(values) -> float:
    """Sample standard deviation over seeds (ddof = 1); NaN for a single seed."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - truth) ** 2)))


def macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over *all* ``n_classes`` classes of the dataset: a class absent from both truth
    and prediction of a resample scores 0, so every resample averages over the same label set
    (like ``f1_score(labels=range(n_classes), zero_division=0)``, without its overhead)."""
    confusion = np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)
    hits = np.diag(confusion).astype(np.float64)
    denom = confusion.sum(0) + confusion.sum(1)
    f1 = np.divide(2 * hits, denom, out=np.zeros(n_classes), where=denom > 0)
    return float(f1.mean())


def headline(task: str, n_classes: int = 0) -> tuple[str, Callable[[np.ndarray, np.ndarray], float], int]:
    """(name, metric(truth, prediction), sign): sign 1 if higher is better, -1 if lower is."""
    if task == Task.REGRESSION:
        return "rmse", rmse, -1
    return "macro_f1", lambda t, p: macro_f1(t, p, n_classes), 1


@dataclass(frozen=True)
class Difference:
    """Mean over seeds of metric(a) - metric(b) on the test split, and its 95 % bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_difference(
    truth: np.ndarray,
    clusters: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Difference:
    """``a`` and ``b`` are (seeds, samples) test predictions of two methods (any seed counts)."""
    truth, a, b = np.asarray(truth), np.atleast_2d(a), np.atleast_2d(b)

    def gap(idx: np.ndarray) -> float:
        return float(
            np.mean([metric(truth[idx], p[idx]) for p in a])
            - np.mean([metric(truth[idx], p[idx]) for p in b])
        )

    _, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    draws = [
        gap(np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))]))
        for _ in range(resamples)
    ]
    low, high = np.quantile(draws, [0.025, 0.975])
    return Difference(gap(np.arange(len(truth))), float(low), float(high))
