"""Every method x inference modality (S1, S2) x seeds on a dataset: ``results.md``, ``results.json``
and plots. One teacher per (dataset, seed) guides all students of that seed."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from eo_missing_qgis.core.definitions import MODALITIES, Modality, Task

from .config import dataset_method_config
from .datasets import load_dataset
from .methods import GUIDED
from .methods.rf import evaluate_rf, fit_rf
from .run import SplitData, evaluate, fit, predict, split_data

STUDENTS = ("single", *GUIDED)
INFERENCE = (Modality.S1, Modality.S2)


def _record(dataset, method, modality, seed, val, test, seconds, pred=None) -> dict:
    row = {
        "dataset": dataset,
        "method": method,
        "modality": modality,
        "seed": seed,
        "val": val,
        "test": test,
        "seconds": round(seconds, 2),
    }
    if pred is not None:
        row["test_prediction"] = [round(float(v), 3) for v in np.asarray(pred).reshape(-1)]
    return row


def _log(text: str) -> None:
    print(text, flush=True)


def run_seed(
    dataset: str, data_dir: Path, seed: int, overrides: list[str] = (), threads: int = 1, log=_log
) -> list[dict]:
    """Teacher, then every student and the random forests, for one (dataset, seed)."""
    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    data = load_dataset(dataset, data_dir)
    rows = []
    regression = data.info.task == Task.REGRESSION
    prep = split_data(data, seed)
    t0 = time.perf_counter()
    cfg = replace(dataset_method_config(dataset, "teacher", overrides), seed=seed)
    teacher, _ = fit(cfg, prep)
    rows.append(
        _record(
            dataset,
            "teacher",
            "all",
            seed,
            evaluate(teacher, prep, "val"),
            evaluate(teacher, prep, "test"),
            time.perf_counter() - t0,
        )
    )
    if regression and seed == 0:
        rows[-1]["test_truth"] = [float(v) for v in prep.arrays["test"]["y"]]
    log(f"[{dataset} seed {seed}] teacher test {rows[-1]['test']}")
    state = teacher.model.state_dict()
    for modality in INFERENCE:
        for method in STUDENTS:
            t0 = time.perf_counter()
            cfg = replace(dataset_method_config(dataset, method, overrides), seed=seed, modalities=[modality])
            module, _ = fit(cfg, prep, teacher_state=state)
            pred = predict(module.predictor(), prep.arrays["test"]) if regression and seed == 0 else None
            rows.append(
                _record(
                    dataset,
                    method,
                    modality,
                    seed,
                    evaluate(module, prep, "val"),
                    evaluate(module, prep, "test"),
                    time.perf_counter() - t0,
                    pred,
                )
            )
            log(
                f"[{dataset} seed {seed}] {method} {modality} test {rows[-1]['test']} "
                f"({rows[-1]['seconds']:.0f} s)"
            )
        rows.append(_rf_row(dataset, prep, [modality], modality, seed, regression))
    rows.append(_rf_row(dataset, prep, list(MODALITIES), "all", seed, regression))
    return rows


def _rf_row(dataset: str, prep: SplitData, modalities, label: str, seed: int, regression: bool) -> dict:
    t0 = time.perf_counter()
    model = fit_rf(prep, modalities, seed, jobs=1)
    test, pred = evaluate_rf(model, prep, modalities, "test")
    val, _ = evaluate_rf(model, prep, modalities, "val")
    return _record(
        dataset,
        "rf",
        label,
        seed,
        val,
        test,
        time.perf_counter() - t0,
        pred if regression and seed == 0 else None,
    )


def summarise(rows: list[dict], split: str = "test") -> dict:
    """{dataset: {method: {modality: {metric: (mean, std)}}}} over seeds."""
    groups: dict = {}
    for r in rows:
        cell = groups.setdefault(r["dataset"], {}).setdefault(r["method"], {}).setdefault(r["modality"], {})
        for k, v in r[split].items():
            cell.setdefault(k, []).append(v)
    return {
        d: {
            m: {
                mod: {k: (float(np.mean(v)), float(np.std(v))) for k, v in cell.items()}
                for mod, cell in by_mod.items()
            }
            for m, by_mod in by_method.items()
        }
        for d, by_method in groups.items()
    }


def best_guided(rows: list[dict], dataset: str, modality: str) -> str:
    """The guided method with the best mean *validation* headline metric (test never used)."""
    summary = summarise([r for r in rows if r["dataset"] == dataset], "val")[dataset]
    key = "rmse" if "rmse" in summary["single"][modality] else "macro_f1"
    sign = 1 if key == "rmse" else -1
    return min(GUIDED, key=lambda m: sign * summary[m][modality][key][0])


def markdown(rows: list[dict], seeds: int, command: str, seconds: float) -> str:
    summary = summarise(rows)
    lines = [
        f"# Benchmark results (test split, mean ± std over {seeds} seeds)",
        "",
        f"Command: `{command}`  ",
        f"Wall time: {seconds / 60:.1f} min",
        "",
    ]
    for dataset, by_method in summary.items():
        m1, m2 = [k for k in by_method["single"]["S1"]][:2]
        lines += [
            f"## {dataset} ({m1} / {m2})",
            "",
            "| method | S1 | S2 | all modalities |",
            "|---|---|---|---|",
        ]
        for method in ("teacher", "rf", *STUDENTS):
            if method not in by_method:
                continue
            cells = []
            for mod in (*INFERENCE, "all"):
                c = by_method[method].get(mod)
                cells.append(
                    f"{c[m1][0]:.3f} ± {c[m1][1]:.3f} / {c[m2][0]:.3f} ± {c[m2][1]:.3f}" if c else ""
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        sel = {mod: best_guided(rows, dataset, mod) for mod in INFERENCE}
        lines += [
            "",
            f"Best guided student by validation {m1}: " + ", ".join(f"{mod}: {m}" for mod, m in sel.items()),
            "",
        ]
    return "\n".join(lines)


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for dataset, by_method in summarise(rows).items():
        metric = next(iter(by_method["single"]["S1"]))
        methods = ["rf", *STUDENTS]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for k, mod in enumerate(INFERENCE):
            means = [by_method[m][mod][metric][0] for m in methods]
            stds = [by_method[m][mod][metric][1] for m in methods]
            ax.bar(np.arange(len(methods)) + 0.4 * k, means, 0.4, yerr=stds, label=mod, capsize=3)
        ax.axhline(by_method["teacher"]["all"][metric][0], color="k", ls="--", label="teacher (all)")
        ax.set_xticks(np.arange(len(methods)) + 0.2, methods)
        ax.set_ylabel(f"test {metric}")
        ax.set_title(dataset)
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{dataset}_bars.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths + _scatter(rows, out, plt)


def _scatter(rows: list[dict], out: Path, plt) -> list[Path]:
    preds = [r for r in rows if "test_prediction" in r and r["modality"] != "all"]
    truth_rows = [r for r in rows if "test_truth" in r]
    if not preds or not truth_rows:
        return []
    truth = np.asarray(truth_rows[0]["test_truth"])
    fig, axes = plt.subplots(
        2, len(preds) // 2 + len(preds) % 2, figsize=(3 * len(preds) / 2, 6), squeeze=False
    )
    for ax, r in zip(axes.flat, preds, strict=False):
        ax.scatter(truth, r["test_prediction"], s=3, alpha=0.5)
        lo, hi = truth.min(), truth.max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{r['method']} {r['modality']}", fontsize=8)
    fig.supxlabel("measured LFMC (%)")
    fig.supylabel("predicted LFMC (%)")
    fig.tight_layout()
    path = out / "lfmc_scatter.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def benchmark(
    datasets: list[str],
    data_dir: Path,
    out: Path,
    seeds: int = 5,
    overrides: list[str] = (),
    command: str = "",
    jobs: int = 2,
    log=_log,
) -> list[dict]:
    """Runs (dataset, seed) pairs in ``jobs`` processes of one thread each (small nets use a core
    better one process each than two threads on one model)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [(d, data_dir, s, list(overrides), 1) for d in datasets for s in range(seeds)]
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            parts = pool.starmap(run_seed, tasks)
    else:
        parts = [run_seed(*t) for t in tasks]
    rows = [r for part in parts for r in part]
    seconds = time.perf_counter() - t0
    (out / "results.json").write_text(
        json.dumps({"seconds": seconds, "seeds": seeds, "rows": rows}, indent=1), encoding="utf-8"
    )
    (out / "results.md").write_text(markdown(rows, seeds, command, seconds), encoding="utf-8")
    plots(rows, out)
    log(f"benchmark done in {seconds / 60:.1f} min: {out / 'results.md'}")
    return rows
