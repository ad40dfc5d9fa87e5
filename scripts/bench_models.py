"""Speed and memory of the models that ship (and any ``.onnx`` given), in one table from one run.

    .venv/bin/python scripts/bench_models.py [extra.onnx ...] [--sizes 1000 5000 10000]
        [--max-seconds 600] [--threads 2] [--memory-mb 512] [--no-bundled]

Per model: multiply-adds per pixel (Gemm/MatMul/Conv shapes from ONNX shape inference at batch 1),
bare ONNX Runtime px/s (the model's own inputs from the real cube, already standardised in memory,
the engine's batch size), end-to-end px/s (the engine on a VRT mosaic of the real WorldCereal cube,
read -> preprocess -> ONNX Runtime -> GeoTIFF), their ratio, the model's multiply-adds per second
as a share of a plain fp32 MatMul timed right after it in the same process, peak RSS per raster
size (a fresh process each) and the time a 10 980² tile would take at the largest size's end-to-end speed.
``--max-seconds`` stops a size after that long (marked ``*``): its RSS and px/s are those so far.
Bare ORT is timed in each size's process right after its engine run; on a shared machine wall-clock
ratios move with the load (printed with the table), so the CPU seconds per pixel of bare ORT over
those of the engine run are given too (1.0: the engine costs nothing but the model).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_inference import TILE, add_child_options, fast_card, mlp_onnx, mosaic  # noqa: E402

MODELS = ROOT / "eo_missing_qgis" / "models"
#: Cube variable of each band a card may ask for.
CUBE_VARS = {"S1": "S1-SIGMA0-{}", "S2": "S2-L2A-{}"}
#: Side of a Sentinel-2 tile at 10 m, in pixels.
S2_TILE = 10980


def pixel_graph(path: str | Path):
    """The graph of ``path`` with every input's batch dimension set to 1 and every tensor's shape
    inferred (``value_info``): one pixel's tensors."""
    import onnx

    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return onnx.shape_inference.infer_shapes(model, strict_mode=True).graph


def activation_bytes_per_pixel(path: str | Path) -> int:
    """Bytes of all intermediate tensors of one pixel (4 bytes a value): what the activations take
    if none were freed or reused during a run, an upper bound on what ONNX Runtime holds."""
    graph = pixel_graph(path)
    weights = {i.name for i in graph.initializer}  # exporters list them in value_info too
    return sum(4 * int(np.prod([d.dim_value for d in v.type.tensor_type.shape.dim]))
               for v in graph.value_info if v.name not in weights)


def macs_per_pixel(path: str | Path) -> int:
    """Multiply-adds of one pixel through the graph's Gemm, MatMul and Conv nodes, from the shapes
    ONNX shape inference gives with every input's batch dimension set to 1."""
    graph = pixel_graph(path)
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    for v in (*graph.input, *graph.value_info, *graph.output):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    total = 0
    for node in graph.node:
        if node.op_type not in ("Gemm", "MatMul", "Conv"):
            continue
        out, a, b = shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1])
        if not out or not a or not b or 0 in out:
            raise ValueError(f"{Path(path).name}: no static shape for {node.op_type} '{node.name}'")
        if node.op_type == "Conv":  # each output value: input channels per group x kernel
            per_out = int(np.prod(b[1:]))
        elif node.op_type == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            per_out = a[0] if trans_a else a[1]
        else:
            per_out = a[-1]
        total += int(np.prod(out)) * per_out
    return total


def matmul_macs_per_second(threads: int, n: int = 1152, seconds: float = 2.0) -> float:
    """Multiply-adds/s of ONNX Runtime's fp32 MatMul (n x n by n x n) on ``threads`` threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(n, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.normal(size=(n, n)).astype(np.float32)
    session.run(None, {"x": x})
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        session.run(None, {"x": x})
        calls += 1
    return calls * n**3 / (time.perf_counter() - start)


#: The cube's months (2020-11 .. 2021-10): a VRT mosaic loses the netCDF dates, and models with a
#: month input (or a calendar axis without a fixed first month) need them.
CUBE_DATES = tuple(f"{2020 + (10 + m) // 12}-{(10 + m) % 12 + 1:02d}" for m in range(12))


def cube_inputs(card, folder: Path, data_dir: Path, size: int) -> list:
    """One mosaic per band the card reads (its own S1 and S2 bands), dated, as engine inputs."""
    from eo_missing_qgis.core.definitions import TimeLayout
    from eo_missing_qgis.core.raster_inputs import RasterInput

    return [RasterInput(mosaic(folder, data_dir, CUBE_VARS[s.modality].format(b), size), modality=s.modality,
                        layout=TimeLayout.BAND_PER_LAYER, band=b, dates=list(CUBE_DATES))
            for s in card.inputs for b in s.band_names]


def cube_feeds(session, inputs: list, batch: int) -> dict[str, np.ndarray]:
    """The network's tensors for the cube's own 100 x 100 pixels (the engine's preprocessing and
    context inputs), repeated to ``batch`` pixels."""
    from eo_missing_qgis.core.block import BlockContext, prepare_block
    from eo_missing_qgis.core.definitions import ContextKind
    from eo_missing_qgis.core.raster_inputs import match_inputs
    from eo_missing_qgis.core.raster_io import pixel_latlon
    from eo_missing_qgis.core.reader import WindowReader
    from eo_missing_qgis.core.tiling import Window

    card = session.card
    plan = match_inputs(card, inputs)
    grid, _ = plan.reference_grid(None)
    reader = WindowReader(plan, grid, "nearest")
    win = Window(0, 0, TILE, TILE)
    try:
        lat, lon = pixel_latlon(grid, win) if card.context_of(ContextKind.LATLON) else (None, None)
        months = plan.time.known_months(card.name) if card.context_of(ContextKind.MONTH) else None
        prepared = prepare_block(reader.read(win), card, context=BlockContext(months, lat, lon))
    finally:
        reader.close()
    return {k: np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:]))) for k, x in prepared.tensors.items()}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_px_per_second(session, feeds: dict[str, np.ndarray], seconds: float) -> tuple[float, float]:
    """Pixels per second of ``session.run`` alone on ``feeds``, and CPU seconds per pixel."""
    batch = len(next(iter(feeds.values())))
    session.run(feeds)
    start, cpu, done = time.perf_counter(), cpu_seconds(), 0
    while done < 3 * batch or time.perf_counter() - start < seconds:
        session.run(feeds)
        done += batch
    return done / (time.perf_counter() - start), (cpu_seconds() - cpu) / done


def child(args: argparse.Namespace) -> dict:
    """One model at one size in this process: the engine (RSS is this process's peak by then), then
bare ORT at the engine's batch."""
    from eo_missing_qgis.core.engine import RunOptions, run_model, working_budget
    from eo_missing_qgis.core.errors import Cancelled
    from eo_missing_qgis.core.session import open_session
    from eo_missing_qgis.core.tiling import batch_size_for, tile_for

    folder, data_dir = Path(args.workdir), Path(args.data_dir)
    session = open_session(args.model, device="cpu", threads=args.threads)
    card = session.card
    inputs = cube_inputs(card, folder, data_dir, args.size)
    done = [0.0]
    cpu = cpu_seconds()
    start = time.perf_counter()
    limit = args.max_seconds if args.max_seconds is not None else float("inf")
    try:
        result = run_model(session, inputs, folder / f"pred_{args.size}.tif",
                           options=RunOptions(memory_mb=args.memory_mb, threads=args.threads),
                           progress=lambda f: done.__setitem__(0, f),
                           cancel=lambda: time.perf_counter() - start > limit)
        pixels, seconds, stopped = result.pixels_predicted + result.pixels_nodata, result.seconds, False
        for p in result.outputs.values():
            Path(p).unlink()
    except Cancelled:
        pixels, seconds, stopped = done[0] * args.size**2, time.perf_counter() - start, True
    e2e_cpu = (cpu_seconds() - cpu) / pixels
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before bare ORT's own arrays
    # The engine's calls: its batch, never more than the pixels of a window.
    working = working_budget(args.memory_mb)
    th, tw = tile_for(card, None, working, (TILE, TILE))
    batch = min(th * tw, batch_size_for(card, working, None, session.bytes_per_pixel, session.provider))
    bare, bare_cpu = bare_px_per_second(session, cube_feeds(session, inputs, batch), args.bare_seconds)
    matmul = matmul_macs_per_second(args.threads, args.matmul_size, args.bare_seconds / 2)  # the same moment
    return {"size": args.size, "bare_px_s": bare, "e2e_px_s": pixels / seconds, "batch": batch,
            "stopped": stopped, "rss_mb": rss, "cpu_ratio": bare_cpu / e2e_cpu, "matmul": matmul}


def run_size(model: Path, size: int, args: argparse.Namespace, work: str) -> dict:
    """:func:`child` in a fresh process."""
    cmd = [sys.executable, __file__, "--child", "--model", str(model), "--size", str(size), "--workdir", work,
           "--data-dir", args.data_dir, "--memory-mb", str(args.memory_mb), "--threads", str(args.threads),
           "--bare-seconds", str(args.bare_seconds)]
    if args.max_seconds is not None:
        cmd += ["--max-seconds", str(args.max_seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{model.name} at {size}² failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bundled() -> list[Path]:
    """The models of eo_missing_qgis/models/index.json, in its order."""
    index = json.loads((MODELS / "index.json").read_text(encoding="utf-8"))
    return [MODELS / m["file"] for m in index["models"]]


def duration(seconds: float) -> str:
    """'42 s', '12.5 min' or '2.7 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def table_row(model: Path, macs: int, runs: list[dict]) -> str:
    """One markdown row; speeds from the largest size run."""
    last = runs[-1]
    matmul = last["matmul"]
    bare, e2e = last["bare_px_s"], last["e2e_px_s"]
    rss = " | ".join(f"{r['rss_mb']:,.0f}{'*' if r['stopped'] else ''}" for r in runs)
    return (f"| {model.name} | {macs:,} | {bare:,.0f} | {e2e:,.0f}{'*' if last['stopped'] else ''} | "
            f"{e2e / bare:.2f} | {last['cpu_ratio']:.2f} | {100 * bare * macs / matmul:.0f} % | "
            f"{last['batch']:,} | {rss} | "
            f"{duration(S2_TILE**2 / e2e)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="more .onnx files to bench after the bundled ones")
    p.add_argument("--no-bundled", action="store_true", help="only the models given")
    p.add_argument("--stand-in", type=int, metavar="HIDDEN", default=0,
                   help="also a stand-in fast student: a Gemm MLP over 12 months of S1 + S2, masks, "
                        "month and lat/lon, HIDDEN units per layer (264: ~120 k multiply-adds per pixel)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000],
                   help="mosaic sides in px: multiples of 500, or of 100 up to 500")
    p.add_argument("--max-seconds", type=float, default=None, help="stop each size's engine run after this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-mb", type=float, default=512.0)
    p.add_argument("--bare-seconds", type=float, default=5.0, help="how long bare ORT is timed")
    p.add_argument("--matmul-size", type=int, default=1152)
    p.add_argument("--data-dir",
                   default=os.environ.get("EO_MISSING_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    add_child_options(p)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    models = ([] if args.no_bundled else bundled()) + [Path(m) for m in args.models]
    sizes = " | ".join(f"RSS {s}² MB" for s in args.sizes)
    rows: list[str] = []
    matmuls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="eo_bench_models_") as work:
        if args.stand_in:
            stand_in = Path(work) / f"stand_in_mlp_{args.stand_in}.onnx"
            models.append(mlp_onnx(stand_in, args.stand_in, fast_card()))
        if not models:
            sys.exit("no model to bench: give .onnx files, --stand-in, or leave out --no-bundled")
        for model in models:
            runs = [run_size(model, size, args, work) for size in args.sizes]
            rows.append(table_row(model, macs_per_pixel(model), runs))
            matmuls += [r["matmul"] for r in runs]
            print(f"done: {model.name}", file=sys.stderr, flush=True)
    print(f"ONNX Runtime fp32 MatMul {args.matmul_size}², {args.threads} threads, timed in each size's "
          f"process after bare ORT: {2 * min(matmuls) / 1e9:.0f} to {2 * max(matmuls) / 1e9:.0f} GFLOP/s; "
          f"memory budget {args.memory_mb:g} MB; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | mult-adds/px | bare ORT px/s | e2e px/s | e2e/bare | CPU bare/e2e | of MatMul | batch | "
          f"{sizes} | {S2_TILE}² tile |")
    print("|---" * (9 + len(args.sizes)) + "|")
    print("\n".join(rows))
    print(f"\nSpeeds, ratio and batch from the {args.sizes[-1]}² run; * stopped after --max-seconds "
          f"{args.max_seconds:g} s (RSS and px/s so far)." if args.max_seconds else
          f"\nSpeeds, ratio and batch from the {args.sizes[-1]}² run.")


if __name__ == "__main__":
    main()
