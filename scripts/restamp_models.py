"""Re-stamp the bundled models with the current export's format, without retraining.

Writes each eo_missing_qgis/models/*.onnx at the export's ONNX IR version with its card's STAC-MLM
block and Deepness keys recomputed, and its STAC Item (<name>.stac.json) beside it. The graph and
weights are not touched, so the test metrics in the cards stay true. Given the shared data
directory, each card also gets the footprint and season of its training split (schema 1.2).
Usage: .venv/bin/python scripts/restamp_models.py [DATA_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from eo_missing_qgis.core.model_index import MODELS_DIR
from training.export import restamp

if __name__ == "__main__":
    for path in sorted(MODELS_DIR.glob("*.onnx")):
        restamp(path, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
        print(f"{path.name}: re-stamped; {path.with_suffix('.stac.json').name} written")
