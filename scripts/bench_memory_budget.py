"""Peak memory of a run against its memory budget (issues 11, 13), on a mosaic of the real cube.

    .venv/bin/python scripts/bench_memory_budget.py [--model M.onnx] [--size 1000] [--budgets 64 128 512]

Each budget runs in a fresh process: the model is loaded (its network memory per pixel measured
by calibration, :func:`.session.probe_output`), then the run's peak resident memory above that
point is measured and printed next to the budget, with the share the budget gives the network's
batches (activations and ONNX Runtime's arena: batch x measured bytes per pixel), the graph's own
bound on activations (every intermediate tensor of the batch alive at once, from ONNX shape
inference) and the process's whole peak (Python, libraries and model included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(model: str, size: int, budget: float, data_dir: Path, work: Path) -> dict:
    """One run in this process: budget, peak above the loaded model, tile and batch sizes."""
    from eo_missing_qgis.core.engine import RunOptions, run_model
    from eo_missing_qgis.core.raster_inputs import RasterInput
    from eo_missing_qgis.core.session import open_session, peak_growth
    from scripts.bench_inference import mosaic
    from scripts.bench_models import activation_bytes_per_pixel
    from tests.tiny_models import S2_BANDS

    inputs = [RasterInput(mosaic(work, data_dir, b, size)) for b in S2_BANDS]
    session = open_session(model, "cpu")
    logs: list[str] = []
    result: dict = {}

    def run() -> None:
        result["run"] = run_model(session, inputs, work / "out.tif", options=RunOptions(memory_mb=budget),
                                  log=logs.append)

    grown = peak_growth(run)
    for path in result["run"].outputs.values():
        Path(path).unlink()
    sizing = next(m for m in logs if m.startswith("tiles of"))
    batch = int(sizing.split("batches of ")[1].split()[0]) if "batches of" in sizing else 0
    return {"budget_mb": budget, "peak_mb": round((grown or 0) / 2**20), "sizing": sizing,
            "network_mb": round(batch * (session.bytes_per_pixel or 0) / 2**20),
            "graph_activations_mb": round(batch * activation_bytes_per_pixel(model) / 2**20),
            "bytes_per_pixel": session.bytes_per_pixel,
            "process_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "seconds": round(result["run"].seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "eo_missing_qgis" / "models" / "crop_type_europe_s2.onnx"))
    p.add_argument("--size", type=int, default=1000, help="mosaic side in px (a multiple of 500, > 500)")
    p.add_argument("--budgets", type=float, nargs="+", default=[64, 128, 512])
    p.add_argument("--data-dir",
                   default=os.environ.get("EO_MISSING_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.size, args.child, Path(args.data_dir), Path(args.workdir))))
        return
    with tempfile.TemporaryDirectory(prefix="eo_memory_") as work:
        for budget in args.budgets:
            cmd = [sys.executable, __file__, "--child", str(budget), "--workdir", work, "--model", args.model,
                   "--size", str(args.size), "--data-dir", args.data_dir]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"budget {budget:g} MB failed:\n{proc.stderr}")
            print(proc.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
