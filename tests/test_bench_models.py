"""Smoke test of scripts/bench_models.py on a tiny model at a tiny size (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts.bench_inference import mlp_onnx
from scripts.bench_models import macs_per_pixel
from tests.tiny_models import card_dict, tiny_onnx

ROOT = Path(__file__).resolve().parent.parent


def test_multiply_adds_of_an_mlp_are_its_weight_counts(tmp_path):
    model = mlp_onnx(tmp_path / "mlp.onnx", 32)
    # 12 months x 9 bands -> 32 -> 32 -> 3 classes: one multiply-add per weight.
    assert macs_per_pixel(model) == 108 * 32 + 32 * 32 + 32 * 3


def test_bench_prints_one_row_per_model(tmp_path, data_dir):
    model = tiny_onnx(tmp_path / "tiny_s1_s2.onnx", card_dict(modalities=("S1", "S2")))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_models.py"), str(model), "--no-bundled",
         "--sizes", "200", "--bare-seconds", "0.1", "--matmul-size", "64", "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny_s1_s2.onnx")]
    assert len(rows) == 1, proc.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 10  # model, mult-adds, bare, e2e, ratio, CPU ratio, share, batch, RSS 200², tile
    assert int(cells[1].replace(",", "")) == macs_per_pixel(model)
    assert float(cells[3].replace(",", "")) > 0 and float(cells[8].replace(",", "")) > 0
