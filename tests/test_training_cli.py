"""``python -m training`` end to end: fit (also with DDP on 2 CPU processes), evaluate, rf, benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

CONFIGS = ROOT / "training" / "configs"
TINY = ["--set", "max_epochs=1", "--set", "net.filters=8"]


def run_cli(*args: str, data_dir, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "EO_MISSING_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    return proc


def test_fit_with_ddp_on_two_cpu_processes(data_dir, tmp_path):
    out = tmp_path / "ddp"
    proc = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "lfmc.yaml"),
        "--config",
        str(CONFIGS / "methods/single.yaml"),
        "--set",
        "modalities=[S2]",
        *TINY,
        "--trainer",
        "strategy=ddp",
        "--trainer",
        "devices=2",
        "--trainer",
        "limit_train_batches=2",
        "--trainer",
        "limit_val_batches=1",
        "--out",
        str(out),
        data_dir=data_dir,
    )
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1" in log and "MEMBER: 2/2" in log  # two processes joined the group
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["modalities"] == ["S2"] and run["metrics"]["test"]["rmse"] > 0


def test_fit_kd_trains_its_teacher_then_evaluate(data_dir, tmp_path):
    out = tmp_path / "kd"
    run_cli(
        "fit",
        "--config",
        str(CONFIGS / "crop_type.yaml"),
        "--config",
        str(CONFIGS / "methods/kd.yaml"),
        "--set",
        "modalities=[S1]",
        *TINY,
        "--out",
        str(out),
        data_dir=data_dir,
    )
    assert (out / "teacher" / "run.json").is_file() and (out / "model.ckpt").is_file()
    saved = json.loads((out / "run.json").read_text())["metrics"]
    evaluated = json.loads(run_cli("evaluate", "--run", str(out), data_dir=data_dir).stdout)
    assert evaluated["test"]["macro_f1"] == pytest.approx(saved["test"]["macro_f1"])


def test_fit_random_forest(data_dir):
    proc = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "algae.yaml"),
        "--config",
        str(CONFIGS / "methods/rf.yaml"),
        "--set",
        "modalities=[S2]",
        "--out",
        "unused",
        data_dir=data_dir,
    )
    scores = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert 0 < scores["test"]["accuracy"] <= 1


def test_benchmark_writes_tables_json_and_plots(data_dir, tmp_path):
    out = tmp_path / "bench"
    run_cli(
        "benchmark",
        "--dataset",
        "lfmc",
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--grid",
        "1",
        "--rows",
        "single",
        "single 2 encoders",
        "kd",
        *TINY,
        "--out",
        str(out),
        data_dir=data_dir,
    )
    results = json.loads((out / "results.json").read_text())
    combos = {(r["method"], r["modality"]) for r in results["rows"]}
    for method in ("single", "single x5", "single 2 encoders", "kd", "rf"):
        assert {(method, "S1"), (method, "S2")} <= combos
    assert {("teacher", "all"), ("rf", "all")} <= combos
    assert len(results["tests"]["lfmc"]["truth"]) == len(results["rows"][0]["test_prediction"])
    diffs = {(d["guided"], d["control"], d["modality"]): d for d in results["differences"]}
    controls = ("single", "single 2 encoders", "single x5", "rf")
    guides = ("teacher (all modalities)", "rf (all modalities)")
    headroom = {(g, "single", m) for g in guides for m in ["S1", "S2"]}
    assert set(diffs) == {("kd", c, m) for c in controls for m in ["S1", "S2"]} | headroom
    assert all(d["low"] <= d["difference"] <= d["high"] for d in diffs.values())
    table = (out / "results.md").read_text()
    assert "| single x5 |" in table and "±" in table and "Best guided student by validation rmse" in table
    assert "| kd - single 2 encoders |" in table and "bootstrap over 50 test sites" in table
    assert "| teacher (all modalities) - single |" in table
    assert (out / "lfmc_bars.png").stat().st_size > 0 and (out / "lfmc_scatter.png").stat().st_size > 0


def test_unknown_config_key_is_a_clear_error(data_dir, tmp_path):
    env = {**os.environ, "EO_MISSING_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "fit",
            "--config",
            str(CONFIGS / "lfmc.yaml"),
            "--set",
            "epochs=3",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "unknown config keys ['epochs']" in proc.stderr
