"""The demo behind scripts/demo.sh (see there). Prints what a user sees in the Processing log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eo_missing_qgis.core.definitions import BANDS, Modality  # noqa: E402
from eo_missing_qgis.core.model_index import load_index, tasks  # noqa: E402
from scripts.qgis_process_env import qgis_process_env  # noqa: E402

CUBE = "worldcereal/worldcereal_preprocessed_inputs.nc"
VARIABLES = {
    Modality.S1: tuple(f"S1-SIGMA0-{b}" for b in BANDS[Modality.S1]),
    Modality.S2: tuple(f"S2-L2A-{b}" for b in BANDS[Modality.S2]),
}
COMBOS = {"s1": (Modality.S1,), "s2": (Modality.S2,), "s1_s2": (Modality.S1, Modality.S2)}


def run_case(env: dict, title: str, modalities: tuple[str, ...], cube: Path, stem: Path) -> dict:
    args = ["qgis_process.bin", "run", "eomissing:predict", "--json", "--", f"TASK={title}",
            f"OUTPUT={stem}.tif", f"CONFIDENCE={stem}_confidence.tif"]
    for modality in modalities:
        args += [f'{modality}=NETCDF:"{cube}":{var}' for var in VARIABLES[modality]]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"qgis_process failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


def main(data_dir: str, out: str) -> None:
    cube = (Path(data_dir) / CUBE).resolve()
    if not cube.is_file():
        raise SystemExit(f"The WorldCereal cube is not at {cube}: give the data directory as first argument.")
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = qgis_process_env(ROOT, out_dir / "qgis_profile")
    subprocess.run(["qgis_process.bin", "plugins", "enable", "eo_missing_qgis"], env=env, check=True,
                   capture_output=True)
    models = load_index()
    files = {m.name: m.file for m in models}
    pngs = []
    for task, title in tasks(models).items():
        for combo, modalities in COMBOS.items():
            print(f"\n=== {title} from {' + '.join(modalities)} ===", flush=True)
            stem = out_dir / f"{task}_{combo}"
            report = run_case(env, title, modalities, cube, stem)
            print("\n".join(report["log"]["info"]))
            results = report["results"]
            rasters = [p for p in (results.get("OUTPUT"), results.get("CONFIDENCE")) if p]
            png = stem.with_suffix(".png")
            subprocess.run([sys.executable, str(ROOT / "scripts" / "render_prediction.py"),
                            str(files[results["MODEL_NAME"]]), str(png), *rasters], check=True,
                           capture_output=True)
            pngs.append(png)
    print("\nRendered:\n" + "\n".join(str(p) for p in pngs))


if __name__ == "__main__":
    main(*sys.argv[1:3])
