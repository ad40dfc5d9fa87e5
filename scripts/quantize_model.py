"""A dynamically quantised (int8 weights) copy of an ONNX model, its card kept, with its speed next to
the fp32 model's and how far its outputs move on the real WorldCereal cube.

    .venv/bin/python scripts/quantize_model.py MODEL.onnx [--out MODEL_int8.onnx] [--threads 2]

ONNX Runtime's dynamic quantisation (``quantize_dynamic``) stores MatMul weights as int8 and
quantises activations per batch at run time. It has no integer Gemm, so every Gemm with constant
weights is first rewritten as MatMul + Add (the same arithmetic). Speeds are bare ONNX Runtime on
the cube's own pixels at the engine's batch size, both models timed in this run; the output
difference is over the cube's 100 x 100 pixels (probabilities for a classifier, the value in the
card's unit for a regression). The accuracy on the test split is for the caller to measure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_inference import TILE  # noqa: E402
from scripts.bench_models import bare_px_per_second, cube_feeds, cube_inputs  # noqa: E402


def gemm_as_matmul(model) -> int:
    """Rewrite, in place, every Gemm whose B is an initializer (and A not transposed) as MatMul
    (+ Add of C): the form dynamic quantisation handles. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        w = (w.T if attrs.get("transB", 0) else w) * np.float32(attrs.get("alpha", 1.0))
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), node.input[1]))
        name = node.name or f"gemm{count}"
        has_c = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_c else node.output[0]
        nodes.append(helper.make_node("MatMul", node.input[:2], [product], name=f"{name}_mm"))
        if has_c:
            beta = np.float32(attrs.get("beta", 1.0))
            c = node.input[2]
            if beta != 1:
                if c not in inits:
                    raise ValueError(f"Gemm '{name}': beta {beta} on a computed C is not rewritten")
                inits[c].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[c]) * beta, c))
            nodes.append(helper.make_node("Add", [product, c], [node.output[0]], name=f"{name}_add"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    # Exporters list weights in value_info too: a transposed weight's old shape would contradict it.
    kept = [v for v in model.graph.value_info if v.name not in inits]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    return count


def quantize(src: Path, dst: Path) -> int:
    """Write the int8 copy of ``src`` to ``dst`` with ``src``'s card and IR version (old runtimes
    read the bundled models' IR 9); returns the number of Gemm rewritten."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from eo_missing_qgis.core.card import embed_card, read_card

    model = onnx.load(str(src))
    rewritten = gemm_as_matmul(model)
    with tempfile.TemporaryDirectory(prefix="eo_quant_") as work:
        fp32 = Path(work) / "matmul.onnx"
        onnx.save(model, str(fp32))
        quantize_dynamic(str(fp32), str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         per_channel=True)
    out = onnx.load(str(dst))
    out.ir_version = model.ir_version
    embed_card(out, read_card(src))
    onnx.checker.check_model(out)
    onnx.save(out, str(dst))
    return rewritten


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, help="default: MODEL_int8.onnx next to MODEL")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="how long each model is timed")
    p.add_argument("--memory-mb", type=float, default=512.0, help="budget that sets the engine's batch")
    p.add_argument("--data-dir",
                   default=os.environ.get("EO_MISSING_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = p.parse_args()
    from eo_missing_qgis.core.engine import working_budget
    from eo_missing_qgis.core.session import open_session
    from eo_missing_qgis.core.tiling import batch_size_for

    out = args.out or args.model.with_name(f"{args.model.stem}_int8.onnx")
    if out.resolve() == args.model.resolve():
        sys.exit("the int8 copy must not overwrite the model: give another --out")
    rewritten = quantize(args.model, out)
    fp32, int8 = (open_session(m, device="cpu", threads=args.threads) for m in (args.model, out))
    card = fp32.card
    with tempfile.TemporaryDirectory(prefix="eo_quant_cube_") as work:
        inputs = cube_inputs(card, Path(work), Path(args.data_dir), TILE)
        cube = cube_feeds(fp32, inputs, TILE * TILE)
        batch = batch_size_for(card, working_budget(args.memory_mb), None, fp32.bytes_per_pixel)
        feeds = cube_feeds(fp32, inputs, batch)
    a, b = (np.asarray(s.run(cube)[0], dtype=np.float64) for s in (fp32, int8))
    what = "probability" if card.task == "classification" else f"{card.output.name} ({card.output.unit})"
    if card.task != "classification":
        a, b = (x * card.output.scale + card.output.offset for x in (a, b))
    speeds = [bare_px_per_second(s, feeds, args.seconds)[0] for s in (fp32, int8)]
    print(f"{out}: int8 copy of {args.model.name} ({rewritten} Gemm rewritten as MatMul), card kept; "
          f"{out.stat().st_size / 1e6:.2f} MB vs {args.model.stat().st_size / 1e6:.2f} MB")
    print(f"bare ONNX Runtime, {args.threads} threads, batch {batch}: fp32 {speeds[0]:,.0f} px/s, "
          f"int8 {speeds[1]:,.0f} px/s ({speeds[1] / speeds[0]:.2f}x); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"on the cube's {TILE * TILE} pixels: max |int8 - fp32| {what} = {np.abs(a - b).max():.4g}, "
          f"mean {np.abs(a - b).mean():.4g}"
          + (f"; same class for {100 * np.mean(a.argmax(1) == b.argmax(1)):.2f} % of pixels"
             if card.task == "classification" else ""))


if __name__ == "__main__":
    main()
