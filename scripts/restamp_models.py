"""Re-stamp the bundled models with the current export's format, without retraining.

Writes each eo_missing_qgis/models/*.onnx at the export's ONNX IR version with its card's STAC-MLM
block and Deepness keys recomputed, and its STAC Item (<name>.stac.json) beside it. The graph and
weights are not touched, so the test metrics in the cards stay true. Given the shared data
directory, each card also gets the footprint and season of its training split (schema 1.2).
index.json then gets each card's footprint, for the plugin's choice by location.
Usage: .venv/bin/python scripts/restamp_models.py [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.model_index import MODELS_DIR, footprint_entry
from training.export import restamp


def index_footprints(models_dir: Path = MODELS_DIR) -> None:
    """Copy each card's footprint into index.json (the card stays the source of truth)."""
    index_path = models_dir / "index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    for entry in index["models"]:
        entry.pop("footprint", None)
        footprint = footprint_entry(read_card(models_dir / entry["file"]))
        if footprint:
            entry["footprint"] = footprint
    index_path.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    for path in sorted(MODELS_DIR.glob("*.onnx")):
        restamp(path, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
        print(f"{path.name}: re-stamped; {path.with_suffix('.stac.json').name} written")
    index_footprints()
    print("index.json: footprints copied from the cards")
