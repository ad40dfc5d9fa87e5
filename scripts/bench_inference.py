"""Throughput and peak memory of the raster inference engine, from one run.

Builds VRT mosaics that repeat the real WorldCereal cube (12 months x 9 S2 bands, 100 x 100 px)
to 2 500², 5 000² and 10 000² px without copying data, runs the engine on each in a fresh process
(so peak RSS is that size's alone), and compares end-to-end throughput (read -> preprocess -> ONNX
Runtime -> GeoTIFF) with bare ONNX Runtime on the same pixels already in memory and standardised.

    .venv/bin/python scripts/bench_inference.py [--sizes 2500 5000 10000] [--hidden 256]

The model is a per-pixel MLP over the flattened time series (``--hidden`` units per layer; 0 uses
the tiny test model); outputs go to a temporary folder and are deleted after each size.
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

from eo_missing_qgis.core.card import card_from_dict, embed_card  # noqa: E402
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx  # noqa: E402

CUBE = "worldcereal/worldcereal_preprocessed_inputs.nc"
TILE = 100  # the cube's size, and its block size


def fast_card() -> dict:
    """The card of a fast student: 12 months of S2 and S1, each modality's availability mask, the
    month of each step and the pixel's lat/lon (schema 1.2), the months of the real cube."""
    data = card_dict(modalities=("S1", "S2"))
    data["schema_version"] = "1.2"
    data["time"].update(alignment="calendar", first_month=11)
    data["context"] = [
        {"kind": "mask", "tensor": "s1_mask", "modality": "S1", "encoding": "binary"},
        {"kind": "mask", "tensor": "s2_mask", "modality": "S2", "encoding": "binary"},
        {"kind": "month", "tensor": "month", "encoding": "sin_cos"},
        {"kind": "latlon", "tensor": "latlon", "encoding": "lat_sin_cos_lon"},
    ]
    return data


def mlp_onnx(path: Path, hidden: int, card: dict | None = None) -> Path:
    """A per-pixel MLP (every input, sensors and context, flattened and concatenated -> hidden ->
    hidden -> classes: time as channels, Gemm only) with a valid card (default: S2 only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    card = card_from_dict(card or card_dict(modalities=("S2",)))
    steps = card.time.steps
    shapes = {s.tensor: ["batch", steps, len(s.bands)] for s in card.inputs}
    shapes.update({c.tensor: c.shape(steps) for c in card.context})
    n_in = sum(int(np.prod(shape[1:])) for shape in shapes.values())
    n_out = len(card.output.classes)
    rng = np.random.default_rng(0)
    sizes = [n_in, hidden, hidden, n_out]
    nodes = [helper.make_node("Flatten", [name], [f"{name}_flat"], axis=1) for name in shapes]
    nodes.append(helper.make_node("Concat", [f"{name}_flat" for name in shapes], ["h0"], axis=1))
    inits = []
    for k in range(3):
        w = (rng.normal(size=(sizes[k], sizes[k + 1])) / np.sqrt(sizes[k])).astype(np.float32)
        bias = np.zeros(sizes[k + 1], np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(bias, f"b{k}")]
        nodes.append(helper.make_node("Gemm", [f"h{k}", f"w{k}", f"b{k}"], [f"g{k}"]))
        if k < 2:
            nodes.append(helper.make_node("Relu", [f"g{k}"], [f"h{k + 1}"]))
        else:
            nodes.append(helper.make_node("Softmax", [f"g{k}"], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes, "bench_mlp",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in shapes.items()],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    embed_card(model, card)
    onnx.save(model, str(path))
    return path


def mosaic(folder: Path, data_dir: Path, band: str, size: int) -> str:
    """``size``² px VRT repeating one cube variable, an S2 band (``B02``) or any variable by name
    (``S1-SIGMA0-VV``): tiles of the cube up to 500², then 500² tiles of those; ``size`` a multiple
    of 500, or of 100 up to 500."""
    nc = data_dir / CUBE
    var = band if "-" in band else f"S2-L2A-{band}"
    unit = 500

    def vrt(path: Path, n: int, px: int, source: str, src_px: int, block: int) -> None:
        bands = []
        for t in range(1, 13):
            srcs = "".join(
                f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
                f'<SourceBand>{t}</SourceBand>'
                f'<SourceProperties RasterXSize="{src_px}" RasterYSize="{src_px}" DataType="UInt16" '
                f'BlockXSize="{block}" BlockYSize="{block}"/>'
                f'<SrcRect xOff="0" yOff="0" xSize="{src_px}" ySize="{src_px}"/>'
                f'<DstRect xOff="{c * src_px}" yOff="{r * src_px}" xSize="{src_px}" ySize="{src_px}"/>'
                "</SimpleSource>"
                for r in range(n) for c in range(n))
            bands.append(f'<VRTRasterBand dataType="UInt16" band="{t}"><NoDataValue>65535</NoDataValue>'
                         f"<Description>{var}</Description>{srcs}</VRTRasterBand>")
        gt = "664000, 10, 0, 5612120, 0, -10"
        path.write_text(f'<VRTDataset rasterXSize="{px}" rasterYSize="{px}"><SRS>EPSG:32631</SRS>'
                        f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>")

    cube = f'NETCDF:"{nc}":{var}'
    out = folder / f"{var}_{size}.vrt"
    if size <= unit:
        vrt(out, size // TILE, size, cube, TILE, TILE)
        return str(out)
    base = folder / f"{var}_{unit}.vrt"
    if not base.exists():
        vrt(base, unit // TILE, unit, cube, TILE, TILE)
    vrt(out, size // unit, size, str(base), unit, TILE)
    return str(out)


def child(args: argparse.Namespace) -> None:
    """One size in this process: the engine, then bare ORT; prints a JSON line."""
    from eo_missing_qgis.core.engine import RunOptions, run_model
    from eo_missing_qgis.core.raster_inputs import RasterInput
    from eo_missing_qgis.core.session import open_session

    folder = Path(args.workdir)
    inputs = [RasterInput(mosaic(folder, Path(args.data_dir), b, args.size)) for b in S2_BANDS]
    session = open_session(args.model, device="cpu", threads=args.threads)
    options = RunOptions(memory_mb=args.memory_mb, threads=args.threads)
    out = folder / f"pred_{args.size}.tif"
    # The machine may be shared: bare ORT is timed right before and right after the run.
    before = bare_ort(session, Path(args.data_dir), args.memory_mb)
    result = run_model(session, inputs, out, options=options)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    after = bare_ort(session, Path(args.data_dir), args.memory_mb)
    for p in result.outputs.values():
        Path(p).unlink()
    print(json.dumps({"size": args.size, "pixels": result.pixels_predicted, "seconds": result.seconds,
                      "e2e_px_s": result.pixels_predicted / result.seconds, "bare_px_s": (before + after) / 2,
                      "bare_range": [before, after], "peak_rss_mb": rss_mb}))


def bare_ort(session, data_dir: Path, memory_mb: float, seconds: float = 5.0) -> float:
    """Pixels/s of ``session.run`` alone on the cube's standardised pixels, same batch size."""
    import rasterio

    from eo_missing_qgis.core.preprocessing import prepare
    from eo_missing_qgis.core.tiling import batch_size_for
    from eo_missing_qgis.core.units import preset

    spec = session.card.inputs[0]
    raw = []
    for b in S2_BANDS:
        with rasterio.open(f'NETCDF:"{data_dir / CUBE}":S2-L2A-{b}') as ds:
            raw.append(ds.read())
    raw = np.stack(raw, axis=-1).reshape(12, -1, 9).transpose(1, 0, 2)
    enc = [preset("reflectance", "reflectance x 10000 (L2A DN)")] * 9
    x, _ = prepare(raw, enc, spec)
    batch = batch_size_for(session.card, memory_mb)
    x = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
    start, done = time.perf_counter(), 0
    while done < 3 * batch or time.perf_counter() - start < seconds:
        session.run({spec.tensor: x})
        done += batch
    return done / (time.perf_counter() - start)


def add_child_options(p: argparse.ArgumentParser) -> None:
    """The options a fresh process for one size is started with (hidden from ``--help``)."""
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir",
                   default=os.environ.get("EO_MISSING_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000])
    p.add_argument("--hidden", type=int, default=256, help="MLP width; 0 = the tiny test model")
    p.add_argument("--memory-mb", type=float, default=512.0)
    p.add_argument("--threads", type=int, default=None)
    add_child_options(p)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="eo_bench_") as work:
        model = Path(work) / "model.onnx"
        if args.hidden:
            mlp_onnx(model, args.hidden)
        else:
            tiny_onnx(model, card_dict(modalities=("S2",)))
        print(f"model: {'MLP ' + str(args.hidden) if args.hidden else 'tiny test model'}; "
              f"memory budget {args.memory_mb:g} MB; threads {args.threads or 'ORT default'}")
        print(f"{'size':>8} {'pixels':>12} {'seconds':>8} {'e2e px/s':>11} {'bare px/s':>11} "
              f"{'ratio':>6} {'peak RSS':>9}")
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--child", "--size", str(size), "--model", str(model),
                   "--workdir", work, "--data-dir", args.data_dir, "--memory-mb", str(args.memory_mb)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"size {size} failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{size:>7}² {r['pixels']:>12,} {r['seconds']:>8.1f} {r['e2e_px_s']:>11,.0f} "
                  f"{r['bare_px_s']:>11,.0f} {r['e2e_px_s'] / r['bare_px_s']:>6.2f} "
                  f"{r['peak_rss_mb']:>7.0f} MB   (bare before/after: "
                  f"{r['bare_range'][0]:,.0f} / {r['bare_range'][1]:,.0f})",
                  flush=True)


if __name__ == "__main__":
    main()
