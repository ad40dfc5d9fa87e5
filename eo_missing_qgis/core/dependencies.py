"""Which optional Python packages the plugin needs at run time, and how to install them.

Checked with ``importlib.util.find_spec`` (nothing is imported), so loading the plugin stays fast
and works in a QGIS whose Python lacks them; the algorithms and the panel then say what to do.
"""

from __future__ import annotations

import importlib.util
import sys

#: import name -> pip name
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "rasterio": "rasterio"}
#: import name -> a module that stands in for it (raster_io reads and writes with QGIS's GDAL)
FALLBACKS = {"rasterio": "osgeo"}


def missing_packages() -> list[str]:
    """pip names of the runtime packages this Python cannot import (nor stand in for)."""
    return [pip for name, pip in RUNTIME_PACKAGES.items()
            if importlib.util.find_spec(name) is None
            and (name not in FALLBACKS or importlib.util.find_spec(FALLBACKS[name]) is None)]


def install_hint(missing: list[str]) -> str:
    """A sentence a user can act on, or '' when nothing is missing."""
    if not missing:
        return ""
    pkgs = " ".join(missing)
    where = ("in the OSGeo4W Shell" if sys.platform == "win32"
             else "in a terminal, with the Python that QGIS uses")
    return (
        f"This tool needs the Python package(s) {', '.join(missing)}, which QGIS's Python "
        f"({sys.executable}) cannot import. Install them {where}: "
        f"python3 -m pip install {pkgs}  (or your system's package, e.g. python3-rasterio), "
        "then restart QGIS. In QGIS, Raster > EO missing modalities > Install dependencies… does "
        "this for you, into your QGIS profile."
    )
