#!/usr/bin/env bash
# Runs lint (ruff), dead code (vulture), the plugins.qgis.org security scan (bandit) and the test
# suite (pytest), headless. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k card -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
export EO_MISSING_DATA_DIR=${EO_MISSING_DATA_DIR:-$(cd .. && pwd)/shared/data}
.venv/bin/ruff check .
.venv/bin/vulture eo_missing_qgis training scripts tests --min-confidence 60
.venv/bin/bandit -q -c pyproject.toml -r eo_missing_qgis
.venv/bin/python -m pytest "$@"
