"""Should the plugin read and write with QGIS's own GDAL bindings (osgeo.gdal) when rasterio is absent?

Measures, once, on this machine: the import time of each (fresh interpreter, median of 5), the
disk size of the rasterio install (its RECORD, with the packages only it pulls in), and the read
speed of the same windows with each: the real WorldCereal cube (12 monthly bands per variable,
the engine's access pattern) and a 4096 x 4096 tiled GeoTIFF read in 512 x 512 windows. Prints
the ratios osgeo.gdal / rasterio (< 1: GDAL is faster or smaller).
Usage: .venv/bin/python scripts/bench_raster_backends.py [DATA_DIR]
"""

from __future__ import annotations

import importlib.metadata
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.transform
import rasterio.windows
from osgeo import gdal

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parent.parent
ONLY_FOR_RASTERIO = ("rasterio", "affine", "click", "click-plugins", "cligj")
S2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")


def import_seconds(statement: str, runs: int = 5) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout) for _ in range(runs))


def installed_mb(names: tuple[str, ...]) -> float:
    total = 0
    for name in names:
        dist = importlib.metadata.distribution(name)
        total += sum(Path(dist.locate_file(f)).stat().st_size for f in dist.files or []
                     if Path(dist.locate_file(f)).is_file())
    return total / 1e6


def windows(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    return [(c, r, min(size, width - c), min(size, height - r))
            for r in range(0, height, size) for c in range(0, width, size)]


def read_rasterio(paths: list[str], wins, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for path in paths:
            with rasterio.open(path) as ds:
                for c, r, w, h in wins:
                    ds.read(window=rasterio.windows.Window(c, r, w, h))
    return time.perf_counter() - start


def read_gdal(paths: list[str], wins, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for path in paths:
            ds = gdal.Open(path)
            for c, r, w, h in wins:
                ds.ReadAsArray(c, r, w, h)
            ds = None
    return time.perf_counter() - start


def same_values(paths: list[str], wins) -> bool:
    for path in paths:
        with rasterio.open(path) as ds:
            ref = [ds.read(window=rasterio.windows.Window(*w)) for w in wins[:4]]
        g = gdal.Open(path)
        got = [np.asarray(g.ReadAsArray(*w)).reshape(r.shape) for w, r in zip(wins[:4], ref, strict=True)]
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(ref, got, strict=True)):
            return False
    return True


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    t_rio = import_seconds("import rasterio, rasterio.vrt, rasterio.warp")
    t_gdal = import_seconds("from osgeo import gdal, osr")
    print(f"import: rasterio {t_rio:.3f} s, osgeo.gdal {t_gdal:.3f} s, "
          f"ratio gdal/rasterio {t_gdal / t_rio:.2f}")
    print(f"disk: rasterio {rasterio.__version__} with {', '.join(ONLY_FOR_RASTERIO[1:])}: "
          f"{installed_mb(ONLY_FOR_RASTERIO):.1f} MB installed; osgeo.gdal: 0 MB extra (ships with QGIS, "
          f"GDAL {gdal.__version__})")
    cube = data / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
    paths = [f'NETCDF:"{cube}":S2-L2A-{b}' for b in S2]
    wins = windows(100, 100, 32)
    cases = [("real cube, 9 variables x 12 bands, 32 px windows", paths, wins, 20)]
    with tempfile.TemporaryDirectory() as tmp:
        big = str(Path(tmp) / "big.tif")
        rng = np.random.default_rng(0)
        profile = dict(driver="GTiff", width=4096, height=4096, count=4, dtype="float32", tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", crs="EPSG:32631",
                       transform=rasterio.transform.from_origin(500000, 5600000, 10, 10))
        with rasterio.open(big, "w", **profile) as ds:
            for r in range(0, 4096, 512):
                ds.write(rng.random((4, 512, 4096), dtype=np.float32),
                         window=rasterio.windows.Window(0, r, 4096, 512))
        cases.append(("4096 x 4096 x 4 float32 GeoTIFF, 512 px windows", [big], windows(4096, 4096, 512), 2))
        for label, case_paths, case_wins, repeat in cases:
            assert same_values(case_paths, case_wins), f"{label}: the two backends read different values"
            read_gdal(case_paths, case_wins[:2], 1)  # warm the file cache for both
            t_r = read_rasterio(case_paths, case_wins, repeat)
            t_g = read_gdal(case_paths, case_wins, repeat)
            print(f"read {label}: rasterio {t_r:.3f} s, osgeo.gdal {t_g:.3f} s, "
                  f"ratio gdal/rasterio {t_g / t_r:.2f} (same values: yes)")


if __name__ == "__main__":
    main()
