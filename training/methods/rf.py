"""``rf``: a random forest on the same standardised inputs, flattened (what a dzetsaka user runs)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from eo_missing_qgis.core.definitions import Task

from ..run import SplitData, metrics


def features(arrays: dict[str, np.ndarray], modalities) -> np.ndarray:
    return np.concatenate([arrays[m].reshape(len(arrays[m]), -1) for m in modalities], axis=1)


#: The benchmark's tuning grid for the forest, as large as each network method's grid (chosen on
#: validation): the scikit-learn default feature sampling, and the variant that helps each task
#: (a third of the features per split for regression, class weights per bootstrap sample for the
#: imbalanced classification sets).
GRID = {
    Task.REGRESSION: ({"max_features": 1.0}, {"max_features": 0.33}),
    Task.CLASSIFICATION: (
        {"max_features": "sqrt"},
        {"max_features": "sqrt", "class_weight": "balanced_subsample"},
    ),
}


def forest(task: str, seed: int, trees: int = 200, jobs: int = 2, **params):
    """An unfitted forest of the benchmark's settings for ``task`` (``params`` from :data:`GRID`)."""
    kind = RandomForestClassifier if task == Task.CLASSIFICATION else RandomForestRegressor
    return kind(n_estimators=trees, min_samples_leaf=2, n_jobs=jobs, random_state=seed, **params)


def forest_output(model, x: np.ndarray, task: str, n_outputs: int) -> np.ndarray:
    """Values, or probabilities over all ``n_outputs`` classes (a fold may lack some classes)."""
    if task != Task.CLASSIFICATION:
        return model.predict(x)
    out = model.predict_proba(x)
    if out.shape[1] < n_outputs:
        full = np.zeros((len(out), n_outputs))
        full[:, model.classes_] = out
        out = full
    return out


def fit_rf(prep: SplitData, modalities, seed: int, trees: int = 200, jobs: int = 2, **params):
    model = forest(prep.data.info.task, seed, trees, jobs, **params)
    return model.fit(features(prep.arrays["train"], modalities), prep.arrays["train"]["y"])


def evaluate_rf(model, prep: SplitData, modalities, split: str) -> tuple[dict[str, float], np.ndarray]:
    info = prep.data.info
    out = forest_output(model, features(prep.arrays[split], modalities), info.task, info.n_outputs)
    return metrics(info.task, out, prep.arrays[split]["y"]), out
