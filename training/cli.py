"""``python -m training fit|evaluate|benchmark|months|export|bundle``.

Examples::

    python -m training fit --config training/configs/lfmc.yaml --config training/configs/methods/kd.yaml \\
        --set modalities=[S2] --set seed=1 --out runs/lfmc_kd_s2
    python -m training fit ... --trainer strategy=ddp --trainer devices=2   # DDP on 2 CPU processes
    python -m training evaluate --run runs/lfmc_kd_s2
    python -m training benchmark --dataset all --seeds 5 --out runs/benchmark
    python -m training benchmark --dataset crop_type --set split=random --out runs/benchmark_random
    python -m training months --dataset crop_type_europe --modality S1 --seeds 1 \\
        --rows "fixed kd" rf bundled --k 1 3 all --jobs 1 --out runs/months   # accuracy against months
    python -m training export --run runs/lfmc_kd_s2 --out lfmc_s2.onnx
    python -m training bundle --out eo_missing_qgis/models      # the twelve bundled models
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from eo_missing_qgis.core.definitions import MODALITIES

from .config import CONFIG_DIR, load_config
from .datasets import LOADERS, load_dataset
from .methods import METHODS
from .run import evaluate, fit, load_run, save_run, split_data

ROOT = Path(__file__).resolve().parent.parent


def _data_dir(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("EO_MISSING_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"data directory {path} does not exist: pass --data-dir or set EO_MISSING_DATA_DIR")
    return path


def _trainer_args(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--trainer {pair!r} must look like key=value, e.g. strategy=ddp")
        key, value = pair.split("=", 1)
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def cmd_fit(args) -> None:
    cfg = load_config(args.config, args.set)
    data = load_dataset(cfg.dataset, _data_dir(args.data_dir))
    prep = split_data(data, cfg.seed, cfg.val_fraction, cfg.split)
    out = Path(args.out)
    if cfg.method == "rf":
        from .methods.rf import evaluate_rf, fit_rf

        model = fit_rf(prep, cfg.modalities, cfg.seed)
        scores = {s: evaluate_rf(model, prep, cfg.modalities, s)[0] for s in ("val", "test")}
        print(json.dumps(scores, indent=1))
        return
    trainer_args = _trainer_args(args.trainer)
    teacher_state = None
    if METHODS[cfg.method].wants_teacher(**cfg.method_args):
        if args.teacher:
            teacher, _ = load_run(Path(args.teacher))
        else:
            print(f"training the teacher first (seed {cfg.seed}) into {out / 'teacher'}")
            t_cfg = replace(cfg, method="teacher", method_args={}, modalities=list(MODALITIES))
            teacher, t_trainer = fit(t_cfg, prep, progress=True, root=out / "teacher", **trainer_args)
            save_run(out / "teacher", teacher, t_trainer, t_cfg, prep, _scores(teacher, prep))
        teacher_state = teacher.model.state_dict()
    module, trainer = fit(cfg, prep, teacher_state, progress=True, root=out, **trainer_args)
    scores = _scores(module, prep)
    save_run(out, module, trainer, cfg, prep, scores)
    if trainer.is_global_zero:
        print(json.dumps(scores, indent=1))


def _scores(module, prep) -> dict:
    return {s: evaluate(module, prep, s) for s in ("val", "test")}


def _run_and_data(args):
    """A saved run and its dataset, split as in training (same seed and validation fraction)."""
    module, run = load_run(Path(args.run))
    cfg = run["config"]
    data = load_dataset(cfg["dataset"], _data_dir(args.data_dir))
    prep = split_data(data, cfg["seed"], cfg["val_fraction"], cfg.get("split", "random"))
    return module, run, prep


def cmd_evaluate(args) -> None:
    module, _, prep = _run_and_data(args)
    print(json.dumps({s: evaluate(module, prep, s) for s in args.split}, indent=1))


def cmd_benchmark(args) -> None:
    from .benchmark import benchmark

    datasets = list(LOADERS) if args.dataset == ["all"] else args.dataset
    command = "python -m training " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    benchmark(
        datasets,
        _data_dir(args.data_dir),
        Path(args.out),
        args.seeds,
        args.set,
        command,
        args.jobs,
        args.grid,
        args.rows,
    )


def cmd_months(args) -> None:
    from .benchmark_months import load_months_spec, months_benchmark

    datasets = list(LOADERS) if args.dataset == ["all"] else args.dataset
    command = "python -m training " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    spec = load_months_spec(args.rows, args.k, args.subset_seeds, args.grid, Path(args.spec))
    months_benchmark(
        datasets,
        _data_dir(args.data_dir),
        Path(args.out),
        spec,
        args.seeds,
        args.modality,
        args.set,
        args.run,
        command,
        args.jobs,
    )


def cmd_export(args) -> None:
    from .export import export_run

    module, run, prep = _run_and_data(args)
    name = args.name or Path(args.out).stem
    card, diff = export_run(module, run, prep, Path(args.out), name, args.title, args.description)
    print(
        f"wrote {args.out} ({card.title}); max |ONNX - torch| on {len(prep.splits['test'])} held-out "
        f"samples: {diff:.2e}"
    )


def cmd_bundle(args) -> None:
    from .bundle import build_bundle

    torch.set_num_threads(args.threads)
    build_bundle(Path(args.spec), _data_dir(args.data_dir), Path(args.out), Path(args.work))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument(
            "--data-dir", help="shared data directory (default: $EO_MISSING_DATA_DIR or ../shared/data)"
        )

    p = sub.add_parser("fit", help="train one method on one dataset")
    common(p)
    p.add_argument(
        "--config", action="append", required=True, help=f"YAML file(s), merged in order (see {CONFIG_DIR})"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. seed=3")
    p.add_argument(
        "--trainer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Lightning Trainer argument, e.g. strategy=ddp, devices=2, limit_train_batches=2",
    )
    p.add_argument("--teacher", help="run folder of a trained teacher (kd, dis2); trained first if absent")
    p.add_argument("--out", required=True, help="run folder to write model.ckpt and run.json to")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="metrics of a saved run")
    common(p)
    p.add_argument("--run", required=True)
    p.add_argument("--split", nargs="+", default=["val", "test"], choices=["train", "val", "test"])
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="every method x S1/S2 x seeds; results.md, results.json, plots")
    common(p)
    p.add_argument("--dataset", nargs="+", default=["all"], choices=[*LOADERS, "all"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--jobs", type=int, default=2, help="processes (one thread each) running seeds in parallel"
    )
    p.add_argument("--grid", type=int, default=0, help="use the first N tuning grid points (default: all)")
    p.add_argument(
        "--rows", nargs="+", default=[], help="a subset of the table rows (configs/benchmark.yaml)"
    )
    p.add_argument("--out", default="runs/benchmark")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "months", help="accuracy against the number of months kept per test sample; results.md, plot"
    )
    common(p)
    p.add_argument("--dataset", nargs="+", default=["all"], choices=[*LOADERS, "all"])
    p.add_argument("--modality", nargs="+", default=["S1", "S2"], choices=["S1", "S2"])
    p.add_argument("--seeds", type=int, default=5, help="training seeds per row")
    p.add_argument("--subset-seeds", type=int, default=0, help="random month subsets per k (default: YAML)")
    p.add_argument("--k", nargs="+", default=[], help="months kept per sample, e.g. 1 3 all (default: YAML)")
    p.add_argument("--rows", nargs="+", default=[], help="a subset of the rows (configs/months.yaml)")
    p.add_argument("--spec", default=str(CONFIG_DIR / "months.yaml"),
                   help="rows and k (default: configs/months.yaml); a `bundled` row's file may be absolute")
    p.add_argument("--run", action="append", default=[], help="also score this saved run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, default=2, help="processes (one thread each) running seeds")
    p.add_argument("--grid", type=int, default=0, help="use the first N tuning grid points (default: all)")
    p.add_argument("--out", default="runs/months")
    p.set_defaults(func=cmd_months)

    p = sub.add_parser("export", help="ONNX file with the model card, checked against torch")
    common(p)
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="", help="card name (default: the file name)")
    p.add_argument("--title", default="")
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bundle", help="retrain and export the plugin's bundled models with index.json")
    common(p)
    p.add_argument("--spec", default=str(CONFIG_DIR / "bundled.yaml"))
    p.add_argument("--out", default=str(ROOT / "eo_missing_qgis" / "models"))
    p.add_argument("--work", default=str(ROOT / "runs" / "bundle"))
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_bundle)

    args = parser.parse_args(argv)
    args.func(args)
