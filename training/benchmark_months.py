"""Accuracy against the number of available months (issue 10 item 5): ``results.md``,
``results.json`` and ``months.png`` in the output folder.

Analysts have one scene, a few dates or a full year. Every row of ``configs/months.yaml`` is
trained on the full training series (the benchmark's machinery and tuning grid,
:mod:`training.benchmark`) and scored on the test split thinned to ``k`` steps per sample: the
other steps' physical values of the cell's modalities become NaN (in a copy), and the network
inputs are rebuilt from them by the run's own ``split_data`` call (``EODataset.arrays`` with the
run's card statistics), so fills (and availability masks, for students that take them) follow
the values as in QGIS. The ``k``
steps are drawn per sample among the steps that have data first (an analyst gives dates with
data; a cloudy month is not a date one has), seeded by (subset seed, k): every row sees the same
subsets, so rows pair. The bundled ONNX model runs through the plugin's own ``core.block`` path on
the same thinned samples: today's model on the same months through the engine's fill.

Per row and k: the headline metric averaged over subset seeds, then mean ± sample std over
training seeds; paired differences between roles (``differences`` in the YAML) per k with the
cluster bootstrap of :mod:`training.stats`, every (training seed, subset seed) counting as a seed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from eo_missing_qgis.core.block import BlockContext, predict_block, values_per_pixel
from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.definitions import MODALITIES, Task
from eo_missing_qgis.core.model_index import MODELS_DIR
from eo_missing_qgis.core.session import ModelSession, open_session

from .benchmark import INFERENCE, SPEC, _log, _point, _Seed, quiet_worker, run_tasks, select_rows, test_sets
from .config import CONFIG_DIR, dataset_method_config, read_yaml
from .datasets import EODataset, load_dataset
from .methods import GUIDED, METHODS
from .methods.rf import evaluate_rf
from .run import SplitData, load_run, mapped_samples, metrics, predict, split_data
from .stats import headline, paired_difference, spread

MONTHS_SPEC = CONFIG_DIR / "months.yaml"
ALL = "all"
#: Scores a thinned split: its test outputs (probabilities, or regression values).
Scorer = Callable[[SplitData], np.ndarray]
#: Builds a dataset's splits and network inputs as its run did (:func:`resplitter`).
Resplit = Callable[[EODataset], SplitData]


def step_subsets(data: EODataset, idx: np.ndarray, modalities, k: int | str, seed: int) -> np.ndarray:
    """(samples, steps) bool: the ``k`` steps each sample of ``idx`` keeps, drawn at random
    (seeded by ``seed`` and ``k``) among the steps where every band of ``modalities`` has a value
    first, then among the others; ``k`` = "all" (or >= the steps) keeps every step."""
    steps = data.steps
    if k == ALL or int(k) >= steps:
        return np.ones((len(idx), steps), dtype=bool)
    available = np.logical_and.reduce([np.isfinite(data.physical[m][idx]).all(axis=2) for m in modalities])
    rng = np.random.default_rng([seed, int(k)])
    order = np.argsort(rng.random((len(idx), steps)) - available, axis=1)  # available steps first
    keep = np.zeros((len(idx), steps), dtype=bool)
    np.put_along_axis(keep, order[:, : int(k)], True, axis=1)
    return keep


def thin(data: EODataset, idx: np.ndarray, keep: np.ndarray, modalities) -> EODataset:
    """A copy of ``data`` whose samples ``idx`` have NaN in the steps not in ``keep`` for every
    modality of ``modalities``; ``data`` itself is not modified."""
    physical = dict(data.physical)
    for m in modalities:
        values = data.physical[m].copy()
        part = values[idx]
        part[~keep] = np.nan
        values[idx] = part
        physical[m] = values
    return replace(data, physical=physical)


def resplitter(seed: int, val_fraction: float, split: str) -> Resplit:
    """The run's own ``split_data`` call, to build a (thinned) dataset's inputs as training did."""
    return lambda data: split_data(data, seed, val_fraction, split)


def thinned_split(prep: SplitData, resplit: Resplit, modalities, k: int | str, seed: int) -> SplitData:
    """``prep`` with its test samples thinned to ``k`` steps (subset seed ``seed``), every network
    input rebuilt from the thinned values by ``resplit`` (the training path: fills, and availability
    masks for students that take them, follow the values). Training samples are not thinned, so
    the splits and the card statistics stay the run's; checked."""
    idx = prep.splits["test"]
    out = resplit(thin(prep.data, idx, step_subsets(prep.data, idx, modalities, k, seed), modalities))
    if not np.array_equal(out.splits["test"], idx) or out.specs != prep.specs:
        raise RuntimeError("thinning the test split changed the splits or the card statistics")
    return out


def network_scorer(predictor) -> Scorer:
    return lambda prep: predict(predictor, prep.arrays["test"])


def forest_scorer(model, modalities) -> Scorer:
    return lambda prep: evaluate_rf(model, prep, modalities, "test")[1]


def bundled_outputs(session: ModelSession, data: EODataset, idx: np.ndarray) -> np.ndarray:
    """Outputs of a bundled model on samples ``idx`` through ``core.block.predict_block``, one
    (steps, bands, samples, 1) block per distinct month sequence (a block has one date per step);
    NaN where the plugin writes nodata (no value of the model's sensors in any kept step)."""
    card = session.card
    names = [c.name for c in card.output.classes]
    if card.task == Task.CLASSIFICATION and names != [c.name for c in data.info.classes]:
        raise ValueError(f"model {card.name} predicts classes {names}, not the dataset's classes")
    months = data.months[idx] if data.months is not None else np.zeros((len(idx), 1), dtype=int)
    _, group = np.unique(months, axis=0, return_inverse=True)
    out = np.empty((len(idx), values_per_pixel(card)), dtype=np.float32)
    for g in range(group.max() + 1):
        sel = np.flatnonzero(group.reshape(-1) == g)
        arrays = {
            s.modality: data.physical[s.modality][idx[sel]].transpose(1, 2, 0)[..., None] for s in card.inputs
        }
        context = BlockContext(  # without months or locations, a card that needs them is refused
            None if data.months is None else months[sel[0]].tolist(),
            None if data.latlon is None else data.latlon[idx[sel], :1],
            None if data.latlon is None else data.latlon[idx[sel], 1:],
        )
        res = predict_block(arrays, card, session, probabilities=True, check_units=False, context=context)
        values = res.probabilities[:, :, 0].T if res.probabilities is not None else res.prediction
        out[sel] = np.where(res.valid.reshape(-1, 1), values, np.nan)  # nodata, as the map has it
    return out


def bundled_scorer(path: Path) -> Scorer:
    session = open_session(path, threads=1)
    return lambda prep: bundled_outputs(session, prep.data, prep.splits["test"])


def score_months(
    prep: SplitData, resplit: Resplit, modalities, scorers: dict[str, Scorer], spec: dict, meta: dict
) -> list[dict]:
    """Every scorer on every (k, subset seed) thinning of the test split: one record each."""
    task = prep.data.info.task
    mapped = mapped_samples(prep.data, prep.splits["test"], modalities)
    records = []
    for k in spec["k"]:
        for s in range(spec["subset_seeds"]):
            thinned = thinned_split(prep, resplit, modalities, k, s)
            for label, scorer in scorers.items():
                out = scorer(thinned)
                if np.isnan(out[mapped]).any():
                    raise ValueError(f"{label} gives no value for a test sample the plugin maps")
                out = np.where(mapped.reshape(-1, *[1] * (out.ndim - 1)), out, 0.0)
                records.append(
                    {
                        **meta,
                        "row": label,
                        "k": k,
                        "subset_seed": s,
                        "test": metrics(task, out[mapped], thinned.arrays["test"]["y"][mapped]),
                        "test_prediction": _point(out, task),
                        "mapped": mapped.tolist(),
                    }
                )
    return records


def months_of(spec: dict, dataset: str) -> dict:
    """``spec`` with ``k`` resolved for ``dataset``."""
    ks = spec["k"]
    return {**spec, "k": ks.get(dataset, ks["default"]) if isinstance(ks, dict) else ks}


def bundled_path(row: dict, dataset: str, modality: str) -> Path:
    return MODELS_DIR / row["file"].format(dataset=dataset, modality=modality.lower())


def teacher_for(run: _Seed, teachers: dict[tuple, dict], sets: list[str], seed: int) -> dict:
    """The teacher weights for a row with overrides ``sets``, trained once per distinct ``sets``:
    a student's teacher has the student's network and context inputs (``net.*``, ``context``), and
    the teacher ignores ``time_dropout``, so it always sees the full series. The student method's
    own options (``method_args.*``) are not the teacher's."""
    key = tuple(s for s in sets if not s.startswith("method_args."))
    if key not in teachers:
        run.fit_predictor("teacher", list(key), list(MODALITIES), seed)
        teachers[key] = run.teacher_state
    return teachers[key]


def run_months_seed(
    dataset: str, data_dir: Path, seed: int, overrides: list[str], spec: dict, modalities: list[str], log=_log
) -> list[dict]:
    """Train every row of one (dataset, training seed) and score it on every thinning."""
    quiet_worker(1)
    spec = months_of(spec, dataset)
    run = _Seed(dataset, data_dir, seed, overrides, log)
    base = dataset_method_config(dataset, "teacher", overrides)
    resplit = resplitter(seed, base.val_fraction, base.split)
    teachers: dict[tuple, dict] = {}
    records = []
    for modality in modalities:
        scorers: dict[str, Scorer] = {}
        for label, row in spec["rows"].items():
            if row["method"] == "rf":
                scorers[label] = forest_scorer(run.forest([modality], modality), [modality])
            elif row["method"] == "bundled":
                path = bundled_path(row, dataset, modality)
                if seed == 0 and path.is_file():  # one model, whatever the training seed
                    scorers[label] = bundled_scorer(path)
                elif seed == 0:
                    log(f"[{dataset}] {label} {modality}: no bundled model {path.name}, row left out")
            else:
                sets = row.get("set", [])
                cfg = dataset_method_config(dataset, row["method"], [*overrides, *sets])
                if row["method"] in GUIDED and METHODS[row["method"]].wants_teacher(**cfg.method_args):
                    run.teacher_state = teacher_for(run, teachers, sets, seed)
                predictor = run.tuned(label, row["method"], row.get("set", []), modality, spec["grid"])[2]
                scorers[label] = network_scorer(predictor)
        meta = {"dataset": dataset, "modality": modality, "seed": seed}
        records += score_months(run.prep, resplit, [modality], scorers, spec, meta)
        log(f"[{dataset} seed {seed}] {modality}: {len(scorers)} rows scored on k = {spec['k']}")
    return records


def saved_run_records(run_dir: Path, data_dir: Path, spec: dict) -> list[dict]:
    """A saved run (``python -m training fit --out``) scored on every thinning of its dataset's
    test split, thinned in all its modalities; its row is the folder name."""
    module, run = load_run(run_dir)
    cfg = run["config"]
    resplit = resplitter(cfg["seed"], cfg["val_fraction"], cfg.get("split", "random"))
    prep = resplit(load_dataset(cfg["dataset"], data_dir))
    modalities = list(cfg["modalities"])
    meta = {"dataset": cfg["dataset"], "modality": "+".join(modalities), "seed": cfg["seed"]}
    scorers = {Path(run_dir).name: network_scorer(module.predictor())}
    return score_months(prep, resplit, modalities, scorers, months_of(spec, cfg["dataset"]), meta)


def summarise_months(records: list[dict]) -> dict:
    """{(dataset, modality): {row: {k: (mean, sample std)}}} of the headline metric: the mean
    over subset seeds per training seed, then mean and std over training seeds."""
    per_seed: dict = {}
    for r in records:
        key = next(iter(r["test"]))  # the headline metric comes first
        cell = per_seed.setdefault((r["dataset"], r["modality"]), {}).setdefault(r["row"], {})
        cell.setdefault(str(r["k"]), {}).setdefault(r["seed"], []).append(r["test"][key])
    return {
        cell: {
            row: {
                k: (
                    float(np.mean([np.mean(v) for v in seeds.values()])),
                    spread([np.mean(v) for v in seeds.values()]),
                )
                for k, seeds in by_k.items()
            }
            for row, by_k in rows.items()
        }
        for cell, rows in per_seed.items()
    }


def months_differences(records: list[dict], tests: dict, spec: dict) -> list[dict]:
    """Paired test differences a - b per (dataset, modality, k) for the role pairs of the spec;
    every (training seed, subset seed) of a row counts as one of its seeds."""
    roles = {label: row["role"] for label, row in spec["rows"].items()}
    preds: dict = {}
    mapped: dict = {}
    for r in records:
        preds.setdefault((r["dataset"], r["modality"], str(r["k"]), r["row"]), []).append(
            r["test_prediction"]
        )
        if "mapped" in r:  # the test samples the plugin maps, the same for every row of a cell
            mapped[r["dataset"], r["modality"]] = np.asarray(r["mapped"], bool)
    out = []
    for dataset, modality, k in sorted({key[:3] for key in preds}):
        test = tests[dataset]
        name, metric, _ = headline(test["task"], test["classes"])
        rows = [row for (d, m, kk, row) in preds if (d, m, kk) == (dataset, modality, k)]
        for first, second in spec["differences"]:
            for a in (row for row in rows if roles.get(row) == first):
                for b in (row for row in rows if roles.get(row) == second):
                    scored = mapped.get((dataset, modality), slice(None))
                    d = paired_difference(
                        np.asarray(test["truth"])[scored],
                        np.asarray(test["clusters"])[scored],
                        np.array(preds[(dataset, modality, k, a)])[:, scored],
                        np.array(preds[(dataset, modality, k, b)])[:, scored],
                        metric,
                    )
                    out.append(
                        {
                            "dataset": dataset,
                            "modality": modality,
                            "k": k,
                            "a": a,
                            "b": b,
                            "metric": name,
                            "difference": d.estimate,
                            "low": d.low,
                            "high": d.high,
                            "excludes_zero": d.excludes_zero,
                        }
                    )
    return out


def bundled_notes(records: list[dict], spec: dict) -> list[str]:
    """What each scored bundled model's card says of its training: a model trained on another
    split (before issue 15's grouped splits) may have seen this test split, and its row then
    flatters it; the card's own test metrics show that."""
    notes = []
    for dataset, modality, label in sorted({(r["dataset"], r["modality"], r["row"]) for r in records}):
        row = spec["rows"].get(label, {})
        if row.get("method") == "bundled":
            path = bundled_path(row, dataset, modality)
            prov = read_card(path).provenance
            notes.append(
                f"- {label} {path.name}: {prov.method} seed {prov.seed}, commit {prov.commit[:8]} "
                f"({prov.created}); test metrics in its card: "
                + ", ".join(f"{k} {v:.3f}" for k, v in prov.metrics.items())
                + ". A model trained on an earlier split may have seen this test split: compare with "
                "its card's metrics before reading its row."
            )
    return notes


def months_markdown(records: list[dict], diffs: list[dict], header: dict, notes: list[str] = ()) -> str:
    summary = summarise_months(records)
    lines = [
        f"# Accuracy against the number of available months (test split, {header['seeds']} training "
        f"seeds x {header['subset_seeds']} random month subsets)",
        "",
        f"Command: `{header['command']}`  ",
        f"Wall time: {header['seconds'] / 60:.1f} min. Per row and k: the metric averaged over the "
        "subsets, then mean ± sample std over training seeds (the bundled model has one seed).",
        "",
        *notes,
        *([""] if notes else []),
    ]
    for (dataset, modality), rows in summary.items():
        ks = list(dict.fromkeys(k for by_k in rows.values() for k in by_k))
        metric = next(r for r in records if r["dataset"] == dataset)["test"]
        lines += [
            f"## {dataset} {modality} ({next(iter(metric))} by months kept)",
            "",
            "| row | " + " | ".join(f"k = {k}" for k in ks) + " |",
            "|---" * (len(ks) + 1) + "|",
        ]
        for row, by_k in rows.items():
            cells = [f"{by_k[k][0]:.3f} ± {by_k[k][1]:.3f}" if k in by_k else "" for k in ks]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        cell_diffs = [d for d in diffs if (d["dataset"], d["modality"]) == (dataset, modality)]
        if cell_diffs:
            lines += [
                "",
                f"Paired differences a - b in {cell_diffs[0]['metric']} (95 % cluster bootstrap; "
                f"{'negative' if cell_diffs[0]['metric'] == 'rmse' else 'positive'} = a better; "
                "**bold**: excludes 0):",
                "",
                "| a - b | " + " | ".join(f"k = {k}" for k in ks) + " |",
                "|---" * (len(ks) + 1) + "|",
            ]
            for a, b in dict.fromkeys((d["a"], d["b"]) for d in cell_diffs):
                cells = []
                for k in ks:
                    d = next((x for x in cell_diffs if (x["a"], x["b"], x["k"]) == (a, b, k)), None)
                    text = f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else ""
                    cells.append(f"**{text}**" if d and d["excludes_zero"] else text)
                lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def months_plot(records: list[dict], path: Path) -> Path:
    """Metric against months kept, one line per row, error bars = std over training seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise_months(records)
    fig, axes = plt.subplots(1, len(summary), figsize=(4.5 * len(summary), 3.5), squeeze=False)
    for ax, ((dataset, modality), rows) in zip(axes.flat, summary.items(), strict=True):
        ks = list(dict.fromkeys(k for by_k in rows.values() for k in by_k))
        for row, by_k in rows.items():
            x = [ks.index(k) for k in by_k]
            mean, std = zip(*by_k.values(), strict=True)
            ax.errorbar(x, mean, yerr=np.nan_to_num(std), marker="o", capsize=3, label=row)
        ax.set_xticks(range(len(ks)), ks)
        ax.set_xlabel("months kept per sample")
        ax.set_ylabel(next(iter(next(r for r in records if r["dataset"] == dataset)["test"])))
        ax.set_title(f"{dataset} {modality}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_months_spec(rows: list[str] = (), ks: list[str] = (), subset_seeds: int = 0, grid: int = 0,
                     path: Path = MONTHS_SPEC) -> dict:
    """``configs/months.yaml`` (or ``path``, e.g. with a row for an earlier release's models) with
    the benchmark's tuning grid, narrowed by the CLI options."""
    spec = select_rows(read_yaml(path), rows, "months")
    spec["grid"] = read_yaml(SPEC)["grid"][: grid or None]
    if ks:
        spec["k"] = [k if k == ALL else int(k) for k in ks]
    if subset_seeds:
        spec["subset_seeds"] = subset_seeds
    return spec


def check_rows(spec: dict, datasets: list[str], overrides: list[str]) -> None:
    """Refuse a row whose config cannot be built, before anything is trained."""
    for dataset in datasets:
        for label, row in spec["rows"].items():
            if row["method"] not in ("rf", "bundled"):
                try:
                    dataset_method_config(dataset, row["method"], [*overrides, *row.get("set", [])])
                except ValueError as err:
                    raise ValueError(f"months row {label!r} on {dataset}: {err}") from None


def months_benchmark(
    datasets: list[str],
    data_dir: Path,
    out: Path,
    spec: dict,
    seeds: int = 1,
    modalities: list[str] = INFERENCE,
    overrides: list[str] = (),
    runs: list[Path] = (),
    command: str = "",
    jobs: int = 1,
    log=_log,
) -> list[dict]:
    """Rows x modalities x training seeds of each dataset, plus saved runs; writes the outputs."""
    check_rows(spec, datasets, list(overrides))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [
        (d, data_dir, s, list(overrides), spec, list(modalities)) for d in datasets for s in range(seeds)
    ]
    records = run_tasks(run_months_seed, tasks, jobs)
    for run_dir in runs:
        records += saved_run_records(Path(run_dir), data_dir, spec)
    tests = test_sets(sorted({r["dataset"] for r in records}), data_dir, list(overrides))
    diffs = months_differences(records, tests, spec)
    header = {
        "seconds": time.perf_counter() - t0,
        "seeds": seeds,
        "subset_seeds": spec["subset_seeds"],
        "command": command,
    }
    (out / "results.json").write_text(
        json.dumps({**header, "spec": spec, "differences": diffs, "records": records}, indent=1),
        encoding="utf-8",
    )
    notes = bundled_notes(records, spec)
    (out / "results.md").write_text(months_markdown(records, diffs, header, notes), encoding="utf-8")
    months_plot(records, out / "months.png")
    log(f"months benchmark done in {header['seconds'] / 60:.1f} min: {out / 'results.md'}")
    return records
