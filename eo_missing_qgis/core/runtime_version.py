"""Whether the installed ONNX Runtime can read a model, checked before loading it.

ONNX Runtime refuses a model whose IR version is newer than it knows with "Unsupported model IR
version: 10, max supported IR version: 9", which says nothing about what to do. QGIS builds on
Python 3.9 cannot install onnxruntime newer than 1.19, and other plugins pin older ones, so the
bundled models are written at IR 9 and this check names the update a newer model needs.

The oldest supported onnxruntime is :data:`OLDEST_SUPPORTED` (1.15, the first that reads IR 9; the
bundled models use opset 18, which 1.14 already implements): tests/test_old_onnxruntime.py runs
the bundled models on it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .card.onnx_io import _fields
from .errors import ModelError

#: The oldest onnxruntime that reads each ONNX IR version (ONNX Runtime's compatibility table:
#: 1.15 took ONNX 1.14 and IR 9, 1.18 took ONNX 1.16 and IR 10, 1.23 took ONNX 1.19 and IR 11).
MIN_ORT_FOR_IR = {9: (1, 15), 10: (1, 18), 11: (1, 23)}
OLDEST_SUPPORTED = (1, 15)


def ir_version(path: str | Path) -> int:
    """``ModelProto.ir_version`` (field 1), read from the file's protobuf without onnx."""
    try:
        for number, value in _fields(Path(path).read_bytes()):
            if number == 1 and isinstance(value, int):
                return value
    except (OSError, ValueError) as exc:
        raise ModelError(f"{Path(path).name} is not a readable ONNX model ({exc})") from None
    raise ModelError(f"{Path(path).name} has no ONNX IR version: it is not an ONNX model")


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as ``1.17.1``, ``1.18.0+cu118`` or ``1.20.0.dev1``."""
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return int(match[1]), int(match[2])


def check_runtime(path: str | Path, ort_version: str) -> None:
    """Refuse, with the fix, a model that ``ort_version`` cannot read (its IR version is too new)."""
    ir = ir_version(path)
    installed = parse_version(ort_version)
    known = [v for v in MIN_ORT_FOR_IR if v <= ir]
    if not known or installed >= MIN_ORT_FOR_IR[max(known)]:
        return
    at_least = ".".join(map(str, MIN_ORT_FOR_IR[max(known)]))
    newer = "" if ir in MIN_ORT_FOR_IR else " or newer"
    readable = max((v for v, since in MIN_ORT_FOR_IR.items() if since <= installed), default=8)
    raise ModelError(
        f"{Path(path).name} is an ONNX IR {ir} model: ONNX Runtime {ort_version} cannot read IR {ir} "
        f"models. Update onnxruntime to >= {at_least}{newer} in QGIS's Python "
        f"(pip install --upgrade \"onnxruntime>={at_least}\"), or use a model exported at IR {readable} "
        f"or lower. The plugin supports onnxruntime {'.'.join(map(str, OLDEST_SUPPORTED))} and newer."
    )
