#!/usr/bin/env bash
# Main job: run the plugin's "Predict from available layers" through qgis_process on the real
# WorldCereal cube with S1 only, S2 only and both, for each bundled task; write the GeoTIFFs and
# render each styled result with its legend to PNG.   Usage: bash scripts/demo.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "${1:-../shared/data}" "${DEMO_OUT:-demo_output}"
