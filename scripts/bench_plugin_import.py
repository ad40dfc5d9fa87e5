"""Time plugin import + provider registration in a fresh QGIS process (goal: < 0.3 s).

Prints the seconds taken, the ratio to the 0.3 s budget (< 1 is within it) and whether heavy
modules (onnxruntime, rasterio, torch) were imported: they must load lazily, on first use.
Usage: .venv/bin/python scripts/bench_plugin_import.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BUDGET_S = 0.3
HEAVY = ("onnxruntime", "rasterio", "torch", "onnx")


def main() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    start = time.perf_counter()
    import eo_missing_qgis

    plugin = eo_missing_qgis.classFactory(None)
    plugin.initProcessing()
    seconds = time.perf_counter() - start
    algorithms = [a.id() for a in plugin.provider.algorithms()]
    heavy = [m for m in HEAVY if m in sys.modules]
    print(f"plugin import + provider registration: {seconds:.3f} s "
          f"(ratio to {BUDGET_S} s budget: {seconds / BUDGET_S:.2f}); algorithms: {', '.join(algorithms)}")
    print(f"heavy modules imported at load: {', '.join(heavy) or 'none'}")
    plugin.unload()


if __name__ == "__main__":
    main()
