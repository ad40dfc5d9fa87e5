"""scripts/quantize_model.py: the Gemm -> MatMul rewrite is the same arithmetic; the int8 copy
keeps the card."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from eo_missing_qgis.core.card import read_card
from scripts.bench_inference import fast_card, mlp_onnx
from scripts.quantize_model import gemm_as_matmul, quantize
from tests.tolerances import RUNTIME_RTOL


def _run(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_gemm_rewrite_keeps_outputs_and_int8_copy_keeps_card(tmp_path):
    path = mlp_onnx(tmp_path / "mlp.onnx", 48, fast_card())
    model = onnx.load(str(path))
    rng = np.random.default_rng(1)
    feeds = {i.name: rng.normal(size=[64] + [d.dim_value for d in i.type.tensor_type.shape.dim[1:]])
             .astype(np.float32) for i in model.graph.input}
    before = _run(model, feeds)
    assert gemm_as_matmul(model) == 3
    assert not [n for n in model.graph.node if n.op_type == "Gemm"]
    np.testing.assert_allclose(_run(model, feeds), before, rtol=RUNTIME_RTOL, atol=1e-6)
    int8 = tmp_path / "mlp_int8.onnx"
    quantize(path, int8)
    assert read_card(int8) == read_card(path)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops, ops
    # int8 weights move probabilities by a few hundredths at most on this small network.
    assert np.abs(_run(str(int8), feeds) - before).max() < 0.1
