"""Every table row (``configs/benchmark.yaml``) x inference modality (S1, S2) x seeds on a dataset:
``results.md``, ``results.json`` and plots. One teacher per (dataset, seed) guides all students
of that seed. Each row gets the same tuning grid, chosen per seed on validation; the table
reports test means ± sample std over seeds and paired differences guided - control on the test
split with a cluster bootstrap 95 % interval (:mod:`training.stats`)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from eo_missing_qgis.core.definitions import MODALITIES, Modality, Task

from .config import CONFIG_DIR, dataset_method_config, read_yaml
from .datasets import load_dataset
from .methods import GUIDED
from .methods.rf import GRID as RF_GRID
from .methods.rf import evaluate_rf, fit_rf
from .models import Predictor, context_specs
from .run import SplitData, fit, mapped_samples, metrics, predict, split_data
from .stats import headline, paired_difference, spread

INFERENCE = (Modality.S1, Modality.S2)
SPEC = CONFIG_DIR / "benchmark.yaml"
ENSEMBLE_SEED_STEP = 1000


def _log(text: str) -> None:
    print(text, flush=True)


def _point(prediction: np.ndarray, task: str) -> list:
    """What the bootstrap needs of a prediction: the class index, or the value."""
    if task == Task.CLASSIFICATION:
        return prediction.argmax(1).tolist()
    return [round(float(v), 3) for v in prediction.reshape(-1)]


class _Seed:
    """One (dataset, seed): its split, teacher and the rows recorded so far."""

    def __init__(
        self, dataset: str, data_dir: Path, seed: int, overrides: list[str], log, cache: Path | None = None
    ):
        self.dataset, self.seed, self.overrides, self.log = dataset, seed, list(overrides), log
        self.cache = cache  # out-of-fold teacher outputs, shared by rows and grid points
        base = dataset_method_config(dataset, "teacher", overrides)
        self.prep = split_data(load_dataset(dataset, data_dir), seed, base.val_fraction, base.split)
        self.context = list(base.context)
        self.task = self.prep.data.info.task
        self.key, _, self.sign = headline(self.task)
        self.rows: list[dict] = []
        self.teacher_state = None

    def record(
        self, label: str, modality: str, outputs: dict[str, np.ndarray], t0: float, choice=None
    ) -> None:
        """A table row from val / test outputs (probabilities or values)."""
        scores = {s: self.score(s, out, modality) for s, out in outputs.items()}
        self.rows.append(
            {
                "dataset": self.dataset,
                "method": label,
                "modality": modality,
                "seed": self.seed,
                "val": scores["val"],
                "test": scores["test"],
                "choice": choice,
                "seconds": round(time.perf_counter() - t0, 2),
                "test_prediction": _point(outputs["test"], self.task),
            }
        )
        self.log(f"[{self.dataset} seed {self.seed}] {label} {modality} test {scores['test']} {choice or ''}")

    def score(self, split: str, out: np.ndarray, modality: str) -> dict[str, float]:
        """Metrics of ``out`` on ``split``; a one-sensor row's on the samples QGIS maps from that
        sensor (:func:`.run.mapped_samples`), as the card's figures are."""
        y = self.prep.arrays[split]["y"]
        if modality not in INFERENCE:
            return metrics(self.task, out, y)
        mapped = mapped_samples(self.prep.data, self.prep.splits[split], [modality])
        return metrics(self.task, out[mapped], y[mapped])

    def better(self, a: dict, b: dict | None) -> bool:
        """Whether validation scores ``a`` beat ``b`` on the headline metric."""
        return b is None or self.sign * (a[self.key] - b[self.key]) > 0

    def fit_predictor(self, method: str, sets: list[str], modalities: list[str], seed: int) -> Predictor:
        """Train one network (a teacher is kept to guide the students of this seed)."""
        cfg = replace(
            dataset_method_config(self.dataset, method, [*self.overrides, *sets]),
            seed=seed,
            modalities=modalities,
        )
        module, _ = fit(cfg, self.prep, teacher_state=self.teacher_state, teacher_cache=self.cache)
        if method == "teacher":
            self.teacher_state = module.model.state_dict()
        return module.predictor()

    def fit_outputs(self, method: str, sets: list[str], modalities: list[str], seed: int):
        predictor = self.fit_predictor(method, sets, modalities, seed)
        return {s: predict(predictor, self.prep.arrays[s]) for s in ("val", "test")}

    def choose(self, grid, fit_point: Callable[[object], tuple[object, dict]], modality: str):
        """Fit every grid point with ``fit_point(point) -> (model, {split: outputs})`` and keep the
        best on ``modality``'s validation score: returns (model, outputs, point) of the chosen one."""
        best, best_val = None, None
        for point in grid:
            model, out = fit_point(point)
            val = self.score("val", out["val"], modality)
            if self.better(val, best_val):
                best, best_val = (model, out, point), val
        return best

    def tuned(self, label: str, method: str, sets: list[str], modality: str, grid: list[list[str]]):
        """Fit every grid point, keep the best on validation; returns its outputs, point and predictor."""
        t0 = time.perf_counter()

        def fit_point(point):
            predictor = self.fit_predictor(method, [*sets, *point], [modality], self.seed)
            return predictor, {s: predict(predictor, self.prep.arrays[s]) for s in ("val", "test")}

        predictor, best, choice = self.choose(grid, fit_point, modality)
        self.record(label, modality, best, t0, choice)
        return best, choice, predictor

    def ensemble(self, first: dict, sets: list[str], modality: str, size: int, t0: float) -> None:
        """The chosen ``single`` plus ``size - 1`` more seeds of it, outputs averaged."""
        members = [first] + [
            self.fit_outputs("single", sets, [modality], self.seed + ENSEMBLE_SEED_STEP * k)
            for k in range(1, size)
        ]
        self.record(
            f"single x{size}",
            modality,
            {s: np.mean([m[s] for m in members], axis=0) for s in ("val", "test")},
            t0,
        )

    def forest(self, modalities: list[str], label: str):
        """The random forest tuned on its grid (recorded as row ``rf``); returns the chosen forest.
        It reads what the networks of the run read: the modalities' values and, when the run has
        context inputs, the same masks, months and location (a fair baseline)."""
        t0 = time.perf_counter()
        modalities = [*modalities, *(c.tensor for c in context_specs(self.context, modalities))]

        def fit_point(params):
            model = fit_rf(self.prep, modalities, self.seed, jobs=1, **params)
            return model, {s: evaluate_rf(model, self.prep, modalities, s)[1] for s in ("val", "test")}

        model, best, choice = self.choose(RF_GRID[self.task], fit_point, label)
        self.record("rf", label, best, t0, choice)
        return model


def quiet_worker(threads: int) -> None:
    """One worker process: ``threads`` torch threads, no Lightning chatter."""
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")


def run_tasks(worker: Callable[..., list[dict]], tasks: list[tuple], jobs: int) -> list[dict]:
    """``worker(*task)`` for every task in ``jobs`` spawned processes (in this one if 1); rows joined."""
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            parts = pool.starmap(worker, tasks)
    else:
        parts = [worker(*t) for t in tasks]
    return [r for part in parts for r in part]


def select_rows(spec: dict, rows: list[str], what: str = "benchmark") -> dict:
    """``spec`` with only the table rows ``rows`` (all when empty); unknown labels are refused."""
    if not rows:
        return spec
    unknown = sorted(set(rows) - set(spec["rows"]))
    if unknown:
        raise ValueError(f"unknown {what} rows {unknown}; known: {list(spec['rows'])}")
    return {**spec, "rows": {k: v for k, v in spec["rows"].items() if k in rows}}


def run_seed(
    dataset: str,
    data_dir: Path,
    seed: int,
    overrides: list[str] = (),
    threads: int = 1,
    spec: dict | None = None,
    log=_log,
    cache: Path | None = None,
) -> list[dict]:
    """Teacher, then every row and the random forests, for one (dataset, seed)."""
    quiet_worker(threads)
    spec = spec or read_yaml(SPEC)
    run = _Seed(dataset, data_dir, seed, overrides, log, cache)
    t0 = time.perf_counter()
    run.record("teacher", "all", run.fit_outputs("teacher", [], list(MODALITIES), seed), t0)
    for modality in INFERENCE:
        for label, row in spec["rows"].items():
            t0 = time.perf_counter()
            out, choice, _ = run.tuned(label, row["method"], row.get("set", []), modality, spec["grid"])
            if label == "single" and spec.get("ensemble", 1) > 1:
                run.ensemble(out, choice, modality, spec["ensemble"], t0)
        run.forest([modality], modality)
    run.forest(list(MODALITIES), "all")
    return run.rows


def summarise(rows: list[dict], split: str = "test") -> dict:
    """{dataset: {method: {modality: {metric: (mean, sample std)}}}} over seeds."""
    groups: dict = {}
    for r in rows:
        cell = groups.setdefault(r["dataset"], {}).setdefault(r["method"], {}).setdefault(r["modality"], {})
        for k, v in r[split].items():
            cell.setdefault(k, []).append(v)
    return {
        d: {
            m: {
                mod: {k: (float(np.mean(v)), spread(v)) for k, v in cell.items()}
                for mod, cell in by_mod.items()
            }
            for m, by_mod in by_method.items()
        }
        for d, by_method in groups.items()
    }


def best_guided(rows: list[dict], dataset: str, modality: str, labels: list[str]) -> str:
    """The guided row (of ``labels``, e.g. ``kd (RF teacher)``) with the best mean *validation*
    headline metric (test never used); "none" when the table has no guided row."""
    summary = summarise([r for r in rows if r["dataset"] == dataset], "val")[dataset]
    key = "rmse" if "rmse" in summary["single"][modality] else "macro_f1"
    sign = 1 if key == "rmse" else -1
    return min(
        (m for m in labels if m in summary), key=lambda m: sign * summary[m][modality][key][0], default="none"
    )


def guided_labels(spec: dict) -> list[str]:
    return [label for label, row in spec["rows"].items() if row["method"] in GUIDED]


def control_labels(spec: dict) -> list[str]:
    singles = [label for label, row in spec["rows"].items() if row["method"] == "single"]
    ensemble = [f"single x{spec['ensemble']}"] if spec.get("ensemble", 1) > 1 and "single" in singles else []
    return [*singles, *ensemble, "rf"]


#: Headroom rows: the all-modality references whose margin over ``single`` on the same test
#: samples bounds what distilling from them can be expected to give a one-sensor student.
HEADROOM = {"teacher (all modalities)": "teacher", "rf (all modalities)": "rf"}


def compared(spec: dict, modality: str):
    """((guided row, its modality), (control row, its modality), guided label) of every paired
    difference the tables report: guided - control, then the headroom rows - ``single``."""
    for guided in guided_labels(spec):
        for control in control_labels(spec):
            yield (guided, modality), (control, modality), guided
    for label, method in HEADROOM.items():
        yield (method, "all"), ("single", modality), label


def differences(rows: list[dict], tests: dict, spec: dict) -> list[dict]:
    """Paired test differences guided - control (and headroom - single) per dataset and
    modality, on the samples QGIS maps from that modality, with 95 % intervals."""
    out = []
    for dataset, test in tests.items():
        truth, clusters = np.asarray(test["truth"]), np.asarray(test["clusters"])
        name, metric, sign = headline(test["task"], test["classes"])
        preds: dict = {}
        for r in rows:
            if r["dataset"] == dataset:
                preds.setdefault((r["method"], r["modality"]), {})[r["seed"]] = r["test_prediction"]
        for modality in INFERENCE:
            mapped = np.asarray(test["mapped"][modality], bool)
            for a_key, b_key, label in compared(spec, modality):
                a, b = preds.get(a_key), preds.get(b_key)
                if not a or not b:
                    continue
                a, b = (np.array(list(p.values()))[:, mapped] for p in (a, b))
                d = paired_difference(truth[mapped], clusters[mapped], a, b, metric)
                out.append(
                    {
                        "dataset": dataset,
                        "modality": modality,
                        "guided": label,
                        "control": b_key[0],
                        "metric": name,
                        "difference": d.estimate,
                        "low": d.low,
                        "high": d.high,
                        "guided_better": d.excludes_zero and sign * d.estimate > 0,
                        "control_better": d.excludes_zero and sign * d.estimate < 0,
                    }
                )
    return out


def _difference_line(diffs: list[dict], dataset: str, guided: str, control: str) -> str | None:
    """A table line of the S1 and S2 differences guided - control (bold: interval excludes 0)."""
    cells = []
    for mod in INFERENCE:
        key = (dataset, mod, guided, control)
        d = next((x for x in diffs if (x["dataset"], x["modality"], x["guided"], x["control"]) == key), None)
        text = f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else ""
        cells.append(f"**{text}**" if d and (d["guided_better"] or d["control_better"]) else text)
    return f"| {guided} - {control} | " + " | ".join(cells) + " |" if any(cells) else None


def _cell(c: dict | None, m1: str, m2: str) -> str:
    if not c:
        return ""
    return f"{c[m1][0]:.3f} ± {c[m1][1]:.3f} / {c[m2][0]:.3f} ± {c[m2][1]:.3f}"


def markdown(rows: list[dict], diffs: list[dict], tests: dict, spec: dict, header: dict) -> str:
    summary = summarise(rows)
    lines = [
        f"# Benchmark results (test split, mean ± sample std over {header['seeds']} seeds)",
        "",
        f"Command: `{header['command']}`  ",
        f"Wall time: {header['seconds'] / 60:.1f} min; split: {header['split']}; tuning grid per row "
        f"(chosen per seed on validation): {header['grid']}",
        "",
    ]
    for dataset, by_method in summary.items():
        m1, m2 = list(by_method["single"]["S1"])[:2]
        lines += [
            f"## {dataset} ({m1} / {m2})",
            "",
            "| method | S1 | S2 | all modalities |",
            "|---|---|---|---|",
        ]
        for method in dict.fromkeys(("teacher", "rf", *control_labels(spec), *spec["rows"])):
            if method in by_method:
                cells = [_cell(by_method[method].get(mod), m1, m2) for mod in (*INFERENCE, "all")]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        sel = {mod: best_guided(rows, dataset, mod, guided_labels(spec)) for mod in INFERENCE}
        test = tests[dataset]
        scored = {m: sum(test["mapped"][m]) for m in INFERENCE}
        lines += [
            "",
            f"S1 / S2 columns: scored on the test samples QGIS maps from that sensor ({scored['S1']} / "
            f"{scored['S2']} of {len(test['truth'])}; the others are nodata on a map).",
            "",
            f"Best guided student by validation {m1}: " + ", ".join(f"{mod}: {m}" for mod, m in sel.items()),
            "",
            f"Paired test differences guided - control in {m1} (mean over seeds; 95 % bootstrap over "
            f"{len(set(test['clusters']))} test {test['cluster_kind']}, both methods on the same resample; "
            f"{'negative' if m1 == 'rmse' else 'positive'} = guided better; **bold**: the interval "
            "excludes 0):",
            "",
            "| guided - control | S1 | S2 |",
            "|---|---|---|",
        ]
        lines += [
            line
            for guided in guided_labels(spec)
            for control in control_labels(spec)
            if (line := _difference_line(diffs, dataset, guided, control))
        ]
        headroom = [line for label in HEADROOM if (line := _difference_line(diffs, dataset, label, "single"))]
        if headroom:
            lines += [
                "",
                "Headroom: the all-modality references minus `single` on the same samples and resamples. A",
                "student distilled from a reference that does not beat `single` has nothing to gain from it.",
                "",
                "| reference - control | S1 | S2 |",
                "|---|---|---|",
                *headroom,
            ]
        lines.append("")
    return "\n".join(lines)


def plots(rows: list[dict], tests: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for dataset, by_method in summarise(rows).items():
        metric = next(iter(by_method["single"]["S1"]))
        methods = [m for m in by_method if m != "teacher"]
        fig, ax = plt.subplots(figsize=(max(7, len(methods)), 3.5))
        for k, mod in enumerate(INFERENCE):
            means = [by_method[m].get(mod, {}).get(metric, (np.nan, np.nan))[0] for m in methods]
            stds = [by_method[m].get(mod, {}).get(metric, (np.nan, np.nan))[1] for m in methods]
            ax.bar(np.arange(len(methods)) + 0.4 * k, means, 0.4, yerr=stds, label=mod, capsize=3)
        ax.axhline(by_method["teacher"]["all"][metric][0], color="k", ls="--", label="teacher (all)")
        ax.set_xticks(np.arange(len(methods)) + 0.2, methods, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"test {metric}")
        ax.set_title(dataset)
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{dataset}_bars.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths + _scatter(rows, tests, out, plt)


def _scatter(rows: list[dict], tests: dict, out: Path, plt) -> list[Path]:
    """Predicted against measured LFMC of every seed-0 student."""
    preds = [r for r in rows if r["dataset"] == "lfmc" and r["seed"] == 0 and r["modality"] in INFERENCE]
    if not preds:
        return []
    truth = np.asarray(tests["lfmc"]["truth"])
    cols = (len(preds) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(2.5 * cols, 5.5), squeeze=False)
    for ax, r in zip(axes.flat, preds, strict=False):
        ax.scatter(truth, r["test_prediction"], s=3, alpha=0.5)
        ax.plot([truth.min(), truth.max()], [truth.min(), truth.max()], "k--", lw=0.8)
        ax.set_title(f"{r['method']} {r['modality']}", fontsize=7)
    fig.supxlabel("measured LFMC (%)")
    fig.supylabel("predicted LFMC (%)")
    fig.tight_layout()
    path = out / "lfmc_scatter.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def test_sets(datasets: list[str], data_dir: Path, overrides: list[str]) -> dict:
    """Per dataset: the test truth and clusters (the test split is the same for every seed)."""
    out = {}
    for dataset in datasets:
        cfg = dataset_method_config(dataset, "teacher", overrides)
        prep: SplitData = split_data(load_dataset(dataset, data_dir), 0, cfg.val_fraction, cfg.split)
        data, idx = prep.data, prep.splits["test"]
        out[dataset] = {
            "task": data.info.task,
            "classes": data.info.n_outputs,
            "truth": prep.arrays["test"]["y"].tolist(),
            "clusters": [str(g) for g in data.groups[idx]],
            "cluster_kind": "sites" if dataset == "lfmc" else "location clusters",
            # the samples QGIS maps from each sensor: a one-sensor row is scored on these only
            "mapped": {m: mapped_samples(data, idx, [m]).tolist() for m in INFERENCE},
        }
    return out


def benchmark(
    datasets: list[str],
    data_dir: Path,
    out: Path,
    seeds: int = 5,
    overrides: list[str] = (),
    command: str = "",
    jobs: int = 2,
    grid: int = 0,
    rows: list[str] = (),
    log=_log,
) -> list[dict]:
    """Runs (dataset, seed) pairs in ``jobs`` processes of one thread each (small nets use a core
    better one process each than two threads on one model). ``grid`` > 0 keeps the first points
    of the tuning grid, ``rows`` a subset of the table rows."""
    spec = read_yaml(SPEC)
    if grid:
        spec["grid"] = spec["grid"][:grid]
    spec = select_rows(spec, rows)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = out / "teacher_targets"  # out-of-fold teacher outputs, computed once per (dataset, seed)
    tasks = [(d, data_dir, s, list(overrides), 1, spec, _log, cache) for d in datasets for s in range(seeds)]
    results = run_tasks(run_seed, tasks, jobs)
    tests = test_sets(datasets, data_dir, list(overrides))
    diffs = differences(results, tests, spec)
    header = {
        "seconds": time.perf_counter() - t0,
        "seeds": seeds,
        "command": command,
        "split": dataset_method_config(datasets[0], "teacher", overrides).split,
        "grid": spec["grid"],
    }
    (out / "results.json").write_text(
        json.dumps({**header, "spec": spec, "differences": diffs, "tests": tests, "rows": results}, indent=1),
        encoding="utf-8",
    )
    (out / "results.md").write_text(markdown(results, diffs, tests, spec, header), encoding="utf-8")
    plots(results, tests, out)
    log(f"benchmark done in {header['seconds'] / 60:.1f} min: {out / 'results.md'}")
    return results
