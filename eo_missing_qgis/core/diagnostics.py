"""Plain-text diagnostics: what maintainers ask for in every GPU or install issue, in one paste.

QGIS's version is passed in by the caller (``core`` imports no QGIS). Every package is imported
only here, inside its own section, so a missing or broken one is reported instead of raised.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from .providers import can_load, cuda_libraries, cuda_majors, last_choice

_METADATA = Path(__file__).resolve().parents[1] / "metadata.txt"


def _plugin() -> list[str]:
    for line in _METADATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return [f"version: {line.split('=', 1)[1].strip()}"]
    return ["version: not found in metadata.txt"]


def _python() -> list[str]:
    return [
        f"version: {sys.version.splitlines()[0]}",
        f"executable: {sys.executable}",
        f"platform: {platform.platform()} ({platform.machine()})",
        "sys.path:",
        *(f"  {p}" for p in sys.path),
    ]


def _numpy() -> list[str]:
    import numpy

    return [f"version: {numpy.__version__}", f"location: {Path(numpy.__file__).parent}"]


def _onnxruntime() -> list[str]:
    import onnxruntime as ort

    lines = [
        f"version: {ort.__version__}",
        f"package: {getattr(ort, 'package_name', 'unknown')}",
        f"location: {Path(ort.__file__).parent}",
        f"device: {ort.get_device()}",
        f"available providers: {', '.join(ort.get_available_providers())}",
        f"built for CUDA: {getattr(ort, 'cuda_version', '') or 'no'}",
        f"preload_dlls: {'yes' if hasattr(ort, 'preload_dlls') else 'no (ONNX Runtime < 1.21)'}",
    ]
    if hasattr(ort, "get_build_info"):
        lines.append(f"build info: {ort.get_build_info()}")
    if sys.platform != "darwin":
        cuda, cudnn = cuda_majors(ort)
        found = ", ".join(f"{lib} {'found' if can_load(lib) else 'MISSING'}"
                          for _, lib, _ in cuda_libraries(ort))
        lines.append(f"libraries a CUDA {cuda} / cuDNN {cudnn} build needs: {found}")
    lines += [f"{var}: {os.environ.get(var, '(not set)')}" for var in ("CUDA_PATH", "LD_LIBRARY_PATH")]
    return lines


def _rasterio() -> list[str]:
    import rasterio

    return [f"version: {rasterio.__version__}", f"its GDAL: {rasterio.__gdal_version__}",
            f"its PROJ: {getattr(rasterio, '__proj_version__', 'unknown')}",
            f"location: {Path(rasterio.__file__).parent}"]


def _gdal() -> list[str]:
    from osgeo import gdal, osr

    proj = f"{osr.GetPROJVersionMajor()}.{osr.GetPROJVersionMinor()}.{osr.GetPROJVersionMicro()}"
    return [f"version: {gdal.__version__} ({gdal.VersionInfo('RELEASE_NAME')})", f"PROJ: {proj}",
            f"location: {Path(gdal.__file__).parent}"]


def _last_run() -> list[str]:
    choice = last_choice()
    if choice is None:
        return ["no model opened in this session yet"]
    return [choice.describe()]


def _section(title: str, collect: Callable[[], list[str]]) -> list[str]:
    try:
        lines = collect()
    except ImportError as exc:
        lines = [f"not importable: {exc}"]
    except Exception as exc:  # a broken package (e.g. a PROJ clash) is what is being diagnosed
        lines = [f"error: {type(exc).__name__}: {exc}"]
    return [f"== {title} ==", *lines, ""]


def diagnostics_text(qgis_version: str | None = None) -> str:
    """Every section as plain text, ready to paste into an issue."""
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        ("EO missing modalities plugin", _plugin),
        ("QGIS", lambda: [f"version: {qgis_version}" if qgis_version else "not running inside QGIS"]),
        ("Python", _python),
        ("numpy", _numpy),
        ("onnxruntime", _onnxruntime),
        ("rasterio", _rasterio),
        ("GDAL (osgeo)", _gdal),
        ("Execution provider of the last model", _last_run),
    ]
    return "\n".join(line for title, collect in sections for line in _section(title, collect))
