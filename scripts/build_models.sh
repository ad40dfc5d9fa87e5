#!/usr/bin/env bash
# Retrains the bundled models from the real data and exports them with their model cards into
# eo_missing_qgis/models/ (plus index.json and a STAC Item per model), deterministically (fixed
# seed, fixed thread count).
# Usage: bash scripts/build_models.sh [DATA_DIR]   (default: ../shared/data next to the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-$(cd .. && pwd)/shared/data}
export PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8
.venv/bin/python -m training bundle --data-dir "$DATA_DIR" --spec training/configs/bundled.yaml \
  --out eo_missing_qgis/models --work runs/bundle --threads 2
ls -l eo_missing_qgis/models
