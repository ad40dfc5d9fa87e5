"""The ONNX Runtime version check before loading: the IR version read from the file, and the
message an old runtime gets instead of "Unsupported model IR version"."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest

from eo_missing_qgis.core.errors import ModelError
from eo_missing_qgis.core.model_index import MODELS_DIR, load_index
from eo_missing_qgis.core.runtime_version import check_runtime, ir_version, parse_version
from eo_missing_qgis.core.session import open_session

BUNDLED = sorted(MODELS_DIR.glob("*.onnx"))


def _at_ir(tmp_path, ir: int):
    model = onnx.load(str(MODELS_DIR / "lfmc_s2.onnx"))
    model.ir_version = ir
    path = tmp_path / f"ir{ir}.onnx"
    onnx.save(model, str(path))
    return path


def test_bundled_models_are_ir9_and_the_reader_agrees_with_onnx():
    assert len(BUNDLED) == 12 and sorted(m.file for m in load_index()) == BUNDLED
    for path in BUNDLED:
        assert ir_version(path) == onnx.load(str(path)).ir_version == 9, path.name


@pytest.mark.parametrize(("text", "expected"), [("1.17.1", (1, 17)), ("1.18.0+cu118", (1, 18)),
                                                ("1.20.0.dev20240101", (1, 20)), ("2.0", (2, 0))])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_an_old_runtime_is_told_what_to_update(tmp_path):
    ir10 = _at_ir(tmp_path, 10)
    with pytest.raises(ModelError) as caught:
        check_runtime(ir10, "1.17.1")
    message = str(caught.value)
    assert "ONNX Runtime 1.17.1 cannot read IR 10 models" in message
    assert "onnxruntime to >= 1.18" in message and "exported at IR 9 or lower" in message
    check_runtime(ir10, "1.18.0")  # new enough: no error
    check_runtime(MODELS_DIR / "lfmc_s2.onnx", "1.15.1")  # the bundled IR 9 models
    with pytest.raises(ModelError, match=r"cannot read IR 9 models.*>= 1\.15"):
        check_runtime(MODELS_DIR / "lfmc_s2.onnx", "1.14.1")
    with pytest.raises(ModelError, match=r"IR 12 models.*>= 1.23 or newer"):
        check_runtime(_at_ir(tmp_path, 12), "1.22.0")


def test_open_session_checks_before_loading(tmp_path, monkeypatch):
    """The real session path refuses the model with the plain message, not ORT's own error."""
    monkeypatch.setattr(ort, "__version__", "1.17.1")
    with pytest.raises(ModelError, match=r"ONNX Runtime 1\.17\.1 cannot read IR 10 models"):
        open_session(_at_ir(tmp_path, 10), device="cpu")
    assert open_session(MODELS_DIR / "lfmc_s2.onnx", device="cpu").provider == "CPUExecutionProvider"


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        ir_version(bad)
