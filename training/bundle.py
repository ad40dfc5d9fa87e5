"""Retrain and export the plugin's bundled models and write ``index.json`` (the plugin reads it).

The spec (``training/configs/bundled.yaml``) names, per task, its models: the dataset (a task
may have one model set per region, e.g. crop type in Europe and in East Africa; the plugin picks
by the input's location), the inference modalities and the method with its overrides (the guided
student best on *validation* data in the benchmark). Every model is trained with the same seed,
deterministically, with its dataset's config; a teacher is trained once per dataset and kind of
network when a method needs one. Files are named ``<dataset>_<modalities>.onnx``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from eo_missing_qgis.core.definitions import MODALITIES
from eo_missing_qgis.core.model_index import footprint_entry

from .config import dataset_method_config, read_yaml
from .datasets import load_dataset
from .export import export_run
from .methods import METHODS
from .run import evaluate, fit, split_data


def file_stem(dataset: str, modalities: list[str]) -> str:
    return f"{dataset}_{'_'.join(m.lower() for m in modalities)}"


def build_bundle(spec_path: Path, data_dir: Path, out: Path, work: Path) -> list[dict]:
    spec = read_yaml(spec_path)
    seed = int(spec.get("seed", 0))
    out.mkdir(parents=True, exist_ok=True)
    index = []
    preps: dict = {}
    teachers: dict[str, dict] = {}  # per dataset, net and context: a student distils a teacher of its kind
    for task, entries in spec["tasks"].items():
        for entry in entries:
            dataset = entry.get("dataset", task)
            if dataset not in preps:
                preps[dataset] = split_data(load_dataset(dataset, data_dir), seed)
            prep = preps[dataset]
            cfg = replace(
                dataset_method_config(
                    dataset, entry["method"], [*spec.get("set", []), *entry.get("set", [])]
                ),
                seed=seed,
                modalities=list(entry["modalities"]),
            )
            kind = json.dumps([dataset, cfg.net, cfg.context], sort_keys=True)
            if METHODS[cfg.method].wants_teacher(**cfg.method_args) and kind not in teachers:
                t_cfg = replace(cfg, method="teacher", method_args={}, modalities=list(MODALITIES))
                teachers[kind] = fit(t_cfg, prep)[0].model.state_dict()
            module, _ = fit(cfg, prep, teachers.get(kind), root=work / "fit")
            run = {
                "config": asdict(cfg),
                "steps": prep.data.steps,
                "stats": {m: {"mean": list(s.mean), "std": list(s.std)} for m, s in prep.specs.items()},
                "metrics": {s: evaluate(module, prep, s) for s in ("val", "test")},
            }
            stem = file_stem(dataset, cfg.modalities)
            work.mkdir(parents=True, exist_ok=True)
            (work / f"{stem}.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
            card, diff = export_run(
                module,
                run,
                prep,
                out / f"{stem}.onnx",
                stem,
                entry.get("title", ""),
                entry.get("description", ""),
            )
            print(f"{stem}.onnx: {card.title}; test {run['metrics']['test']}; parity {diff:.1e}", flush=True)
            index.append(
                {
                    "file": f"{stem}.onnx",
                    "task": task,
                    # one title per task, whichever region's model (the panel's task list)
                    "task_title": spec.get("task_titles", {}).get(task, prep.data.info.title),
                    "modalities": list(cfg.modalities),
                    "name": card.name,
                    "title": card.title,
                    # the choice by location reads it here, not from every ONNX file
                    **({"footprint": footprint_entry(card)} if card.footprint else {}),
                }
            )
    (out / "index.json").write_text(
        json.dumps({"version": 1, "models": index}, indent=1) + "\n", encoding="utf-8"
    )
    return index
