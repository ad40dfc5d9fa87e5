"""How often a task's S1, S2 and S1 + S2 models agree, on the demo cube and on held-out data.

    .venv/bin/python scripts/sensor_agreement.py [--task crop_type_europe] [--models DIR]
        [--data-dir ../shared/data] [--smooth 1 3 5] [--gap 12 1] [--benchmark results.json]

Agreement on the cube alone cannot say which model is wrong, or whether the cube is unlike the
training data. So the same three models also run, through the engine's own block step
(:func:`eo_missing_qgis.core.block.predict_block`), on the dataset's held-out test samples: each
model's macro-F1 against the ground truth, per-class F1, and the pairwise agreement there (on the
samples both models can predict). If the S1 model disagrees with S2 on held-out data about as much
as on the cube, the cube is not the problem (issue 14). ``--smooth k``: also run the S1 model on
the cube with its backscatter averaged over k x k pixels (in linear power), to measure how much
per-pixel speckle changes the S1 map (k = 1: as read), after the S1 roughness (speckle) of the
cube and of the training sources. ``--gap 12 1``: the held-out samples
without S2 in December and January, as in the cube. Agreement (cube) and accuracy (held out) are
also given among the samples where the S1 model is at least so confident. ``--benchmark``: the
same held-out agreement for every S1 method and seed of a benchmark run (its results.json keeps
the test predictions), to tell a weak S1 model from a weak S1 method.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eo_missing_qgis.core.block import BlockContext, predict_block  # noqa: E402
from eo_missing_qgis.core.cli import main as predict_cli  # noqa: E402
from eo_missing_qgis.core.preprocessing import decode  # noqa: E402
from eo_missing_qgis.core.raster_io import pixel_latlon, read_header  # noqa: E402
from eo_missing_qgis.core.session import open_session  # noqa: E402
from eo_missing_qgis.core.tiling import Window  # noqa: E402
from training.datasets import load_dataset  # noqa: E402
from training.datasets.crop_type import ENCODINGS  # noqa: E402
from training.datasets.patches import SIZE, read_patch  # noqa: E402
from training.datasets.regional import TANZANIA  # noqa: E402

CUBE = "worldcereal/worldcereal_preprocessed_inputs.nc"
VARIANTS = ("s1", "s2", "s1_s2")
#: The cube's months (2020-11 .. 2021-10).
CUBE_MONTHS = [11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
CONFIDENCES = (0.0, 0.5, 0.7, 0.8)


def pairwise(pred: dict[str, np.ndarray]) -> None:
    """Agreement of each pair on the samples both predicted (class 0 is nodata)."""
    for a, b in itertools.combinations(pred, 2):
        both = (pred[a] > 0) & (pred[b] > 0)
        print(f"  {a} ~ {b}: {np.mean(pred[a][both] == pred[b][both]) * 100:.1f} % of {both.sum()}")


def shares(pred: np.ndarray, k: int) -> str:
    """Share of each class among the predicted samples."""
    counts = np.bincount(pred[pred > 0], minlength=k + 1)[1:]
    return " ".join(f"{c / max(counts.sum(), 1):.2f}" for c in counts)


def on_cube(task: str, models: Path, data_dir: Path, out: Path,
            names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each variant's map of the cube through the CLI, as a user runs it, and the S1 confidence."""
    pred = {}
    for v in VARIANTS:
        tif = out / f"{task}_{v}.tif"
        status = predict_cli(["predict", "--model", str(models / f"{task}_{v}.onnx"),
                              "--input", str(data_dir / CUBE), "--out", str(tif), "--quiet"])
        if status:
            raise SystemExit(status)
        with rasterio.open(tif) as ds:
            pred[v] = ds.read(1).ravel()
        print(f"  {v:6s} class shares ({', '.join(names)}): {shares(pred[v], len(names))}")
    with rasterio.open(out / f"{task}_s1_confidence.tif") as ds:
        return pred, ds.read(1).ravel()


def by_confidence(confidence: np.ndarray, hit: np.ndarray, what: str) -> None:
    """Share of the samples at or above each S1 confidence and how often ``hit`` holds there."""
    for t in CONFIDENCES:
        k = confidence >= t
        print(f"  S1 confidence >= {t:.1f}: {k.mean() * 100:5.1f} % of the samples, {what} "
              f"{np.mean(hit[k]) * 100:5.1f} %")


def smoothed_s1(task: str, models: Path, data_dir: Path, sizes: list[int], s2: np.ndarray) -> None:
    """The S1 model on the cube's S1 averaged over k x k pixels in linear power."""
    session = open_session(models / f"{task}_s1.onnx", threads=1)
    paths = [f'NETCDF:"{data_dir / CUBE}":S1-SIGMA0-{b.name}' for b in session.card.inputs[0].bands]
    grid = read_header(paths[0]).grid
    lat, lon = pixel_latlon(grid, Window(0, 0, grid.height, grid.width))
    physical = []
    for path, encoding in zip(paths, ENCODINGS["S1"], strict=True):
        with rasterio.open(path) as ds:
            physical.append(decode(ds.read(), encoding))
    db = np.stack(physical, axis=1)  # (time, bands, rows, cols)
    speckle(data_dir, db)
    linear = 10 ** (db / 10)
    context = BlockContext(months=CUBE_MONTHS, lat=lat, lon=lon)
    for k in sizes:
        mean = ndimage.uniform_filter(linear, size=(1, 1, k, k), mode="nearest")
        p = predict_block({"S1": 10 * np.log10(mean)}, session.card, session, context=context,
                          check_units=False).prediction.ravel()
        print(f"  S1 averaged over {k} x {k} px: agrees with s2 on {np.mean(p == s2) * 100:.1f} %")


def spatial(db: np.ndarray, same: np.ndarray | None = None) -> str:
    """Median |difference| (dB) between pixels 2 columns apart of (..., rows, cols): the S1 grids
    hold 20 m pixels repeated on 10 m, so these are neighbouring 20 m pixels; only where ``same``
    (rows, cols - 2) says they lie in one parcel, when given."""
    d = np.abs(db[..., 2:] - db[..., :-2])
    return f"{np.nanmedian(d if same is None else d[..., same]):.2f}"


def temporal(db: np.ndarray) -> str:
    """Median |second difference| over months (dB) per band of (time, bands, ...)."""
    d = np.abs(db[2:] - 2 * db[1:-1] + db[:-2])
    return " ".join(f"{np.nanmedian(d[:, b]):.2f}" for b in range(db.shape[1]))


def speckle(data_dir: Path, cube: np.ndarray) -> None:
    """Pixel-to-pixel and month-to-month S1 roughness of the cube, of each Belgian patch (within
    parcels) and of the Flanders points (months only: they have no neighbours)."""
    print(f"  S1 roughness (dB) of the cube: spatial {spatial(cube)}, temporal {temporal(cube)}")
    for folder in sorted((data_dir / "worldcereal" / "old_training_patches").iterdir()):
        if not folder.is_dir() or folder.name == TANZANIA:
            continue
        patch = read_patch(folder)
        s1 = patch.physical["S1"]
        db = s1.reshape(SIZE, SIZE, *s1.shape[1:]).transpose(2, 3, 0, 1)  # (time, bands, rows, cols)
        parcel = np.where(patch.interior, patch.parcel, -1).reshape(SIZE, SIZE)
        same = (parcel[:, 2:] == parcel[:, :-2]) & (parcel[:, 2:] > 0)
        print(f"  S1 roughness (dB) of patch {folder.name}, parcel interiors: spatial {spatial(db, same)}, "
              f"temporal {temporal(db[..., patch.interior.reshape(SIZE, SIZE)])}")
    data = load_dataset("crop_type_europe", data_dir)
    points = data.physical["S1"][data.meta["location"] == "points"].transpose(1, 2, 0)  # (time, bands, n)
    print(f"  S1 roughness (dB) of the Flanders points: temporal {temporal(points)}")


def held_out(task: str, models: Path, data_dir: Path, gap: list[int]) -> None:
    """Each variant on the test samples through the engine's block step: F1 and agreement; S2
    left out in the calendar months ``gap`` (as the cube lacks S2 in December and January)."""
    data = load_dataset(task, data_dir)
    test = data.is_test
    if not (data.months[test] == data.months[test][0]).all():
        raise SystemExit(f"{task}: test samples have different months; one block cannot hold them")
    context = BlockContext(months=list(data.months[test][0]), lat=data.latlon[test, 0][None],
                           lon=data.latlon[test, 1][None])
    y = data.target[test] + 1
    labels = list(range(1, len(data.info.classes) + 1))
    blank = np.isin(context.months, gap)
    pred = {}
    for v in VARIANTS:
        session = open_session(models / f"{task}_{v}.onnx", threads=1)
        arrays = {s.modality: data.physical[s.modality][test].transpose(1, 2, 0)[:, :, None, :].copy()
                  for s in session.card.inputs}
        if "S2" in arrays:
            arrays["S2"][blank] = np.nan
        out = predict_block(arrays, session.card, session, context=context, check_units=False)
        pred[v] = out.prediction[0]
        if v == "s1":
            confidence = out.confidence[0]
        ok = pred[v] > 0
        f1 = f1_score(y[ok], pred[v][ok], labels=labels, average=None, zero_division=0)
        print(f"  {v:6s} predicts {ok.sum()} of {len(y)}: macro-F1 {f1.mean():.3f}, accuracy "
              f"{np.mean(y[ok] == pred[v][ok]):.3f}, per class {' '.join(f'{x:.2f}' for x in f1)}")
    print(f"  truth  class shares: {shares(y, len(labels))}")
    pairwise(pred)
    by_confidence(confidence, pred["s1"] == y, "S1 right on")


def benchmark_agreement(path: Path, task: str, s2_method: str) -> None:
    """From a benchmark's results.json (per seed test predictions): mean validation and test
    macro-F1 of each S1 row and how often it agrees with the ``s2_method`` S2 row, seed by seed."""
    rows = [r for r in json.loads(path.read_text(encoding="utf-8"))["rows"] if r["dataset"] == task]
    s2 = {r["seed"]: np.array(r["test_prediction"]) for r in rows
          if r["method"] == s2_method and r["modality"] == "S2"}
    for method in sorted({r["method"] for r in rows if r["modality"] == "S1"}):
        runs = [r for r in rows if r["method"] == method and r["modality"] == "S1"]
        agree = [np.mean(np.array(r["test_prediction"]) == s2[r["seed"]]) * 100 for r in runs]
        val, test = ([r[s]["macro_f1"] for r in runs] for s in ("val", "test"))
        print(f"  S1 {method:18s} validation macro-F1 {np.mean(val):.3f}, test {np.mean(test):.3f}; "
              f"agrees with S2 {s2_method} on {np.mean(agree):.1f} % ({min(agree):.1f}..{max(agree):.1f}) "
              f"of the test samples over {len(runs)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="crop_type_europe")
    parser.add_argument("--models", type=Path, default=ROOT / "eo_missing_qgis" / "models")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="folder for the cube's maps (default: a temporary one)")
    parser.add_argument("--smooth", type=int, nargs="*", default=[])
    parser.add_argument("--benchmark", type=Path, help="a benchmark's results.json: agreement of its S1 rows")
    parser.add_argument("--s2-method", default="kd", help="the S2 row they are compared with")
    parser.add_argument("--gap", type=int, nargs="*", default=[], help="months without S2 (held out)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report(args, args.out or Path(tmp))


def report(args: argparse.Namespace, out: Path) -> None:
    """The cube's figures, then the held-out ones."""
    out.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in load_dataset(args.task, args.data_dir).info.classes]
    print(f"{args.task} on the cube ({CUBE}):")
    pred, confidence = on_cube(args.task, args.models, args.data_dir, out, names)
    pairwise(pred)
    by_confidence(confidence, pred["s1"] == pred["s2"], "S1 ~ S2 on")
    if args.smooth:
        smoothed_s1(args.task, args.models, args.data_dir, args.smooth, pred["s2"])
    gap = f", no S2 in months {args.gap}" if args.gap else ""
    print(f"{args.task} on its held-out test samples{gap}:")
    held_out(args.task, args.models, args.data_dir, args.gap)
    if args.benchmark:
        print(f"{args.task}: every S1 row of {args.benchmark} on the test samples:")
        benchmark_agreement(args.benchmark, args.task, args.s2_method)


if __name__ == "__main__":
    main()
