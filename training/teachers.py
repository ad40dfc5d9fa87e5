"""Out-of-fold teachers (issue 15, item 5): every training sample gets the output of a teacher
that never saw its site or location cluster, so a student can be distilled from a stronger
teacher than the live network without that teacher having memorised the sample's label.

The training split (only) is cut into ``k`` folds of whole groups (``data.groups``: LFMC sites,
location clusters; stratified by class for classification). For each fold a teacher is fitted on
the other ``k - 1`` folds and predicts the held-out one. Kinds:

- ``rf``: a random forest on every modality flattened over time plus the context a QGIS pixel has
  (month sin/cos per step, latitude / 90, sin/cos longitude). Its inputs are the standardised
  network arrays, whose missing values are the training band mean: a forest splits the same way
  on physical values filled with that mean, since standardising is monotone per band. Its
  :data:`~training.methods.rf.GRID` point is chosen once, on validation, as for the ``rf`` row.
- ``network``: the all-modality ``teacher`` method, early-stopped on the validation split.
- ``ensemble``: the mean of both (probabilities, or standardised values).

Validation and test samples never get an out-of-fold output. Outputs are cached on disk per
(dataset, split, seed, kind, k, teacher settings), so benchmark rows and grid points share them.

``python -m training.teachers --dataset lfmc --seeds 2`` prints each kind's test metric (fitted on
the whole training split) and its out-of-fold metric on the training split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from eo_missing_qgis.core.definitions import MODALITIES, ContextKind, Task

from .config import dataset_method_config
from .datasets.base import _stratifiable
from .methods.kd import TEACHER_OUT, KDModule, stored_teacher_kind
from .methods.rf import GRID, features, forest, forest_output
from .run import RunConfig, SplitData, fit, metrics, predict
from .stats import headline
from .transfer import POOL_FACTOR, append_pool, mix, pairs

#: Methods that can learn from the mixed pool: ``single`` (mixed labels) and ``kd`` (its teacher).
MIXUP_METHODS = ("single", "kd")

KINDS = ("rf", "network", "ensemble")
#: Context arrays the RF teacher adds to the sensors: when and where each sample is.
CONTEXT = (str(ContextKind.MONTH), str(ContextKind.LATLON))
DEFAULT_FOLDS = 5
TREES = 200


@dataclass
class OOF:
    """Out-of-fold teacher outputs for the training split, in ``prep.splits["train"]`` order."""

    index: np.ndarray  #: dataset indices of the training samples
    output: np.ndarray  #: (n, K) probabilities, or (n, 1) standardised regression values
    fold: np.ndarray  #: the held-out fold each sample was predicted in
    #: (m, K) outputs for the mixed pool rows (:func:`pool`), each from its pair's fold teacher
    pool_output: np.ndarray | None = None


def rf_inputs(prep: SplitData, split: str) -> np.ndarray:
    """The RF teacher's features of one split: every modality flattened, then the context arrays
    :func:`training.run.split_data` computes as the plugin does (month sin/cos per step, latitude
    / 90, sin/cos longitude)."""
    return _rf_features(prep, prep.arrays[split])


def _rf_features(prep: SplitData, arrays: dict[str, np.ndarray]) -> np.ndarray:
    missing = [c for c in CONTEXT if c not in arrays]
    if missing:
        raise ValueError(
            f"dataset {prep.data.name} has no {' or '.join(missing)}, which the RF teacher needs"
        )
    return features(arrays, (*MODALITIES, *CONTEXT))


def folds(prep: SplitData, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each training sample; a group never spans two folds."""
    train = prep.splits["train"]
    groups = prep.data.groups[train] if prep.data.groups is not None else train
    y = prep.arrays["train"]["y"]
    if len(np.unique(groups)) < k:
        raise ValueError(f"{prep.data.name}: {len(np.unique(groups))} training groups cannot make {k} folds")
    if prep.data.info.task == Task.CLASSIFICATION:
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        parts = splitter.split(y, _stratifiable(y), groups)
    else:
        parts = GroupKFold(k, shuffle=True, random_state=seed).split(y, groups=groups)
    fold = np.empty(len(train), np.int64)
    for f, (_, held) in enumerate(parts):
        fold[held] = f
    return fold


@dataclass
class Pool:
    """Mixed rows of the training split (:mod:`training.transfer`) and the teacher fold of each."""

    arrays: dict[str, np.ndarray]
    fold: np.ndarray


def pool(prep: SplitData, k: int, seed: int, size: int) -> Pool:
    """``size`` mixed rows of the training split, both samples of a row from one of the ``k``
    teacher folds of ``seed`` (:func:`folds`)."""
    fold = folds(prep, k, seed)
    first, second, weight = pairs(fold, size, seed)
    info = prep.data.info
    arrays = mix(prep.arrays["train"], first, second, weight, info.task, info.n_outputs,
                 prep.target_mean, prep.target_std)
    return Pool(arrays, fold[first])


def rf_params(prep: SplitData, seed: int, jobs: int = 1) -> dict:
    """The :data:`GRID` point whose forest, fitted on the training split, scores best on validation."""
    key, _, sign = headline(prep.data.info.task)
    x, x_val = rf_inputs(prep, "train"), rf_inputs(prep, "val")
    best, best_score = None, None
    for params in GRID[prep.data.info.task]:
        score = metrics(
            prep.data.info.task,
            _rf_fit_predict(prep, params, seed, None, [x_val], x, jobs)[0],
            prep.arrays["val"]["y"],
        )[key]
        if best_score is None or sign * (score - best_score) > 0:
            best, best_score = params, score
    return best


def _rf_fit_predict(prep, params, seed, fit_pos, targets, x_train, jobs) -> list[np.ndarray]:
    """Forest fitted on the training samples at ``fit_pos`` (all if None), outputs for ``targets``."""
    info = prep.data.info
    y = prep.arrays["train"]["y"]
    sel = slice(None) if fit_pos is None else fit_pos
    model = forest(info.task, seed, TREES, jobs, **params).fit(x_train[sel], y[sel])
    return [forest_output(model, x, info.task, info.n_outputs) for x in targets]


def teacher_config(cfg: RunConfig) -> RunConfig:
    """The all-modality network teacher of a student's config (its net, optimiser and seed): a
    benchmark grid point that changes the student's net changes its out-of-fold teacher too."""
    return replace(cfg, method="teacher", method_args={}, modalities=list(MODALITIES), mixup=0.0)


def _network_fit_predict(cfg, prep, fit_pos, targets) -> list[np.ndarray]:
    """Teacher network fitted on the training samples at ``fit_pos`` (all if None), early-stopped
    on the validation split; outputs for ``targets`` (dicts of network arrays)."""
    if fit_pos is not None:
        train = {key: value[fit_pos] for key, value in prep.arrays["train"].items()}
        prep = replace(prep, arrays={**prep.arrays, "train": train})
    predictor = fit(teacher_config(cfg), prep)[0].predictor()
    return [predict(predictor, t) for t in targets]


def _teacher_space(prep: SplitData, out: np.ndarray) -> np.ndarray:
    """Probabilities as they are; regression values standardised as the students' targets."""
    out = np.asarray(out, np.float64).reshape(len(out), -1)
    if prep.data.info.task == Task.CLASSIFICATION:
        return out
    return (out - prep.target_mean) / prep.target_std


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def _cache_file(cache: Path, prep: SplitData, kind: str, k: int, seed: int, settings: dict) -> Path:
    """One file per (dataset, split, seed, kind, k, teacher settings); the split enters through
    the digest of its training and validation indices, so another split never reads it."""
    key = json.dumps(
        {"split": _digest(prep.splits["train"], prep.splits["val"]), "settings": settings},
        sort_keys=True,
        default=str,
    )
    name = f"{prep.data.name}_seed{seed}_{kind}_k{k}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    return cache / name


def _save(path: Path, oof: OOF) -> None:
    """Written to a temporary file and renamed, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        extra = {} if oof.pool_output is None else {"pool_output": oof.pool_output}
        np.savez(f, index=oof.index, output=oof.output, fold=oof.fold, **extra)
    os.replace(tmp, path)


def _load(path: Path) -> OOF:
    with np.load(path) as z:
        return OOF(z["index"], z["output"], z["fold"], z.get("pool_output"))


def oof_targets(
    prep: SplitData,
    kind: str,
    k: int = DEFAULT_FOLDS,
    seed: int = 0,
    *,
    cfg: RunConfig | None = None,
    cache: Path | None = None,
    jobs: int = 1,
    mixed: Pool | None = None,
) -> OOF:
    """Out-of-fold outputs of a ``kind`` teacher for every training sample of ``prep`` (see the
    module docstring), and for the ``mixed`` rows of :func:`pool` (built with the same ``k`` and
    ``seed``). ``cfg`` gives the network teacher's settings (default: the dataset's teacher
    config); ``cache`` a folder to reuse earlier results from."""
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "ensemble":
        parts = [
            oof_targets(prep, sub, k, seed, cfg=cfg, cache=cache, jobs=jobs, mixed=mixed)
            for sub in ("rf", "network")
        ]
        pooled = None if mixed is None else np.mean([p.pool_output for p in parts], axis=0)
        return OOF(parts[0].index, np.mean([p.output for p in parts], axis=0), parts[0].fold, pooled)
    cfg = replace(cfg or dataset_method_config(prep.data.name, "teacher"), seed=seed)
    rf_settings = {"trees": TREES, "grid": GRID[prep.data.info.task], "inputs": [*MODALITIES, *CONTEXT]}
    pool_size = 0 if mixed is None else len(mixed.fold)  # a pool is its size, given k and seed
    settings = {**(rf_settings if kind == "rf" else asdict(teacher_config(cfg))), "pool": pool_size}
    path = _cache_file(cache, prep, kind, k, seed, settings) if cache else None
    if path is not None and path.is_file():
        return _load(path)
    fold = folds(prep, k, seed)
    if kind == "rf":
        x, params = rf_inputs(prep, "train"), rf_params(prep, seed, jobs)

        def run(fit_pos, targets):
            inputs = [_rf_features(prep, t) for t in targets]
            return _rf_fit_predict(prep, params, seed, fit_pos, inputs, x, jobs)
    else:

        def run(fit_pos, targets):
            return _network_fit_predict(cfg, prep, fit_pos, targets)

    n_out = prep.data.info.n_outputs
    output, pool_output = np.zeros((len(fold), n_out)), np.zeros((pool_size, n_out))
    for f in range(k):
        held = np.flatnonzero(fold == f)
        targets = [{m: a[held] for m, a in prep.arrays["train"].items()}]
        if mixed is not None:
            rows = np.flatnonzero(mixed.fold == f)
            targets.append({m: a[rows] for m, a in mixed.arrays.items()})
        outs = run(np.flatnonzero(fold != f), targets)
        output[held] = _teacher_space(prep, outs[0])
        if mixed is not None:
            pool_output[rows] = _teacher_space(prep, outs[1])
    oof = OOF(prep.splits["train"].copy(), output, fold, None if mixed is None else pool_output)
    if path is not None:
        _save(path, oof)
    return oof


def with_teacher_targets(cfg: RunConfig, prep: SplitData, cache: Path | None = None) -> SplitData:
    """``prep`` with the stored teacher's outputs as ``arrays["train"]["teacher_out"]`` when the
    method distils from one (``method_args.teacher=oof_*``), and with the mixed pool appended
    when ``cfg.mixup`` > 0 (:mod:`training.transfer`); unchanged otherwise. Validation and test
    arrays get neither: they are scored on the student's inputs alone."""
    if "teacher" in cfg.method_args and cfg.method != KDModule.method:
        raise ValueError(f"method_args.teacher is a kd option; {cfg.method} has no choice of teacher")
    if cfg.mixup > 0 and cfg.method not in MIXUP_METHODS:
        raise ValueError(f"mixup is an option of {' and '.join(MIXUP_METHODS)}, not of {cfg.method}")
    kind = stored_teacher_kind(cfg.method_args)
    k = cfg.method_args.get("folds", DEFAULT_FOLDS)
    if kind is None and cfg.mixup == 0:
        return prep
    mixed = pool(prep, k, cfg.seed, POOL_FACTOR * len(prep.splits["train"])) if cfg.mixup > 0 else None
    train = prep.arrays["train"]
    if kind is not None:
        oof = oof_targets(prep, kind, k, cfg.seed, cfg=cfg, cache=cache, mixed=mixed)
        train = {**train, TEACHER_OUT: oof.output.astype(np.float32)}
    if mixed is not None:
        rows = dict(mixed.arrays)
        if kind is not None:
            rows[TEACHER_OUT] = oof.pool_output.astype(np.float32)
        train = append_pool(train, rows)
    return replace(prep, arrays={**prep.arrays, "train": train})


def full_outputs(
    prep: SplitData, cfg: RunConfig, seed: int, jobs: int = 1
) -> dict[str, dict[str, np.ndarray]]:
    """{kind: {split: output}} of each teacher kind fitted on the whole training split, for val and
    test (probabilities or physical values): the teachers' own scores."""
    splits = ("val", "test")
    params = rf_params(prep, seed, jobs)
    rf = _rf_fit_predict(
        prep, params, seed, None, [rf_inputs(prep, s) for s in splits], rf_inputs(prep, "train"), jobs
    )
    net = _network_fit_predict(replace(cfg, seed=seed), prep, None, [prep.arrays[s] for s in splits])
    out = {"rf": dict(zip(splits, rf, strict=True)), "network": dict(zip(splits, net, strict=True))}
    out["ensemble"] = {
        s: (out["rf"][s].reshape(len(out["rf"][s]), -1) + out["network"][s]) / 2 for s in splits
    }
    return out


def main(argv: list[str] | None = None) -> None:
    import torch

    from .cli import _data_dir
    from .datasets import LOADERS, load_dataset
    from .run import split_data

    p = argparse.ArgumentParser(prog="python -m training.teachers", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=list(LOADERS))
    p.add_argument("--data-dir")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--folds", type=int, default=DEFAULT_FOLDS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--cache", default="runs/teacher_targets")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, _data_dir(args.data_dir))
    for seed in range(args.seeds):
        cfg = replace(dataset_method_config(args.dataset, "teacher", args.set), seed=seed)
        prep = split_data(data, seed, cfg.val_fraction, cfg.split)
        full = full_outputs(prep, cfg, seed)
        for kind in KINDS:
            oof = oof_targets(prep, kind, args.folds, seed, cfg=cfg, cache=Path(args.cache))
            scores = {s: metrics(data.info.task, out, prep.arrays[s]["y"]) for s, out in full[kind].items()}
            out = (
                oof.output
                if data.info.task == Task.CLASSIFICATION
                else oof.output * prep.target_std + prep.target_mean
            )
            scores["train_oof"] = metrics(data.info.task, out, prep.arrays["train"]["y"])
            print(json.dumps({"dataset": args.dataset, "seed": seed, "teacher": kind, **scores}), flush=True)


if __name__ == "__main__":
    main()
