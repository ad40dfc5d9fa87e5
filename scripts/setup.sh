#!/usr/bin/env bash
# One-command set-up on Debian 12: QGIS 3.22 from apt, a venv that sees Debian's qgis/PyQt5/GDAL,
# pinned Python requirements, then a sanity check. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qgis python3-qgis qgis-providers python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing from apt: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --system-site-packages: Debian's qgis, PyQt5 and osgeo must stay visible. Never pip-install PyQt5.
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" >"$stamp"
fi

QT_QPA_PLATFORM=offscreen .venv/bin/python - <<'PY'
import qgis.core
from osgeo import gdal_array, gdal
import numpy, torch, onnxruntime, rasterio
print("qgis", qgis.core.Qgis.QGIS_VERSION)
print("gdal", gdal.__version__, "(gdal_array ok)" if gdal_array else "")
print("numpy", numpy.__version__)
print("torch", torch.__version__)
print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
print("rasterio", rasterio.__version__, "GDAL", rasterio.__gdal_version__)
PY
echo "Set-up done. Run the tests with: bash scripts/test.sh"
