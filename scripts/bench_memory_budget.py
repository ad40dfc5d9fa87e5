"""Peak memory of a run against its memory budget (issue 11), on a mosaic of the real cube.

    .venv/bin/python scripts/bench_memory_budget.py [--model M.onnx] [--size 1000] [--budgets 64 128 512]

Each budget runs in a fresh process: the model is loaded (its memory per pixel measured), then
the run's peak resident memory above that point is measured and printed next to the budget.
"""

from __future__ import annotations

import argparse
import json
import os
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
    return {"budget_mb": budget, "peak_mb": round((grown or 0) / 2**20),
            "sizing": next(m for m in logs if m.startswith("tiles of")),
            "seconds": round(result["run"].seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "eo_missing_qgis" / "models" / "crop_type_s2.onnx"))
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
