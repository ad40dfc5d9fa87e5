"""QGIS's own GDAL bindings (``osgeo.gdal``) behind the small part of rasterio's API that
:mod:`raster_io` and :mod:`raster_inputs` use, so the plugin runs where rasterio is absent.

Why: QGIS always ships ``osgeo.gdal``; rasterio's wheel adds 112 MB with a second GDAL and PROJ
in the QGIS process (the PROJ database clashes users report), imports 1.7x slower and reads the
same windows no faster (``scripts/bench_raster_backends.py``). rasterio stays the backend for
the CLI and training, and in QGIS when it is installed.

GDAL's global exception mode is left as it is (other plugins rely on it); every call here checks
GDAL's last error itself and raises the rasterio-named errors below.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
from osgeo import gdal, gdal_array, osr

__version__ = gdal.__version__


class RasterioError(Exception):
    """A GDAL operation failed (rasterio's name, so callers catch one set of errors)."""


class RasterioIOError(RasterioError, OSError):
    """A file cannot be opened, read or written."""


class NotGeoreferencedWarning(UserWarning):
    """Never emitted here; named so callers can filter it as they do for rasterio."""


errors = SimpleNamespace(RasterioError=RasterioError, RasterioIOError=RasterioIOError,
                         NotGeoreferencedWarning=NotGeoreferencedWarning)
Resampling = enum.Enum("Resampling", "nearest bilinear cubic cubic_spline lanczos average mode")
MaskFlags = enum.Enum("MaskFlags", {"all_valid": 1, "per_dataset": 2, "alpha": 4, "nodata": 8})
enums = SimpleNamespace(Resampling=Resampling, MaskFlags=MaskFlags)
_GDAL_RESAMPLING = {"nearest": "near", "cubic_spline": "cubicspline"}


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)`` with GDAL's messages kept quiet and turned into :class:`RasterioIOError`."""
    gdal.ErrorReset()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        result = fn(*args, **kwargs)
    except RuntimeError as exc:  # when someone turned on gdal.UseExceptions()
        raise RasterioIOError(f"{what}: {exc}") from None
    finally:
        gdal.PopErrorHandler()
    if gdal.GetLastErrorType() >= gdal.CE_Failure:
        raise RasterioIOError(f"{what}: {gdal.GetLastErrorMsg()}")
    return result


class Window(NamedTuple):
    col_off: int
    row_off: int
    width: int
    height: int


windows = SimpleNamespace(Window=Window)


class Affine(NamedTuple):
    """rasterio's (a, b, c, d, e, f) order; GDAL's geotransform is (c, a, b, f, d, e)."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float

    @classmethod
    def from_gdal(cls, gt: tuple[float, ...]) -> Affine:
        return cls(gt[1], gt[2], gt[0], gt[4], gt[5], gt[3])

    def to_gdal(self) -> tuple[float, ...]:
        return (self.c, self.a, self.b, self.f, self.d, self.e)

    @property
    def is_identity(self) -> bool:
        return tuple(self) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    def almost_equals(self, other: Affine, precision: float = 1e-5) -> bool:
        return all(abs(x - y) < precision for x, y in zip(self, other, strict=True))


class CRS:
    """A coordinate reference system from WKT, compared as GDAL compares them."""

    def __init__(self, wkt: str):
        self.wkt = wkt
        self.srs = osr.SpatialReference()
        self.srs.ImportFromWkt(wkt)
        self.srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)

    @classmethod
    def from_user_input(cls, text: str) -> CRS:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(text)
        return cls(srs.ExportToWkt())

    def to_string(self) -> str:
        name, code = self.srs.GetAuthorityName(None), self.srs.GetAuthorityCode(None)
        return f"{name}:{code}" if name and code else self.wkt

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CRS) and bool(self.srs.IsSame(other.srs))

    def __hash__(self) -> int:
        return hash(self.to_string())


def transform_bounds(src: CRS, dst: CRS, left: float, bottom: float, right: float, top: float,
                     densify_pts: int = 21) -> tuple[float, float, float, float]:
    ct = osr.CoordinateTransformation(src.srs, dst.srs)
    return tuple(_call("transforming bounds", ct.TransformBounds, left, bottom, right, top, densify_pts))


def transform(src_crs: CRS, dst_crs: CRS | str, xs: Any, ys: Any) -> tuple[list[float], list[float]]:
    """rasterio.warp.transform: points from one CRS to another (x, y order, e.g. lon, lat)."""
    dst = dst_crs if isinstance(dst_crs, CRS) else CRS.from_user_input(dst_crs)
    ct = osr.CoordinateTransformation(src_crs.srs, dst.srs)
    points = _call("transforming points", ct.TransformPoints, list(zip(xs, ys, strict=True)))
    return [p[0] for p in points], [p[1] for p in points]


warp = SimpleNamespace(transform_bounds=transform_bounds, transform=transform)


class Dataset:
    """An open GDAL raster with the rasterio dataset attributes the plugin reads and writes."""

    def __init__(self, handle: gdal.Dataset, name: str, source: Dataset | None = None):
        self._ds = handle
        self.name = name
        self._source = source  # a VRT's source: kept open as long as the VRT reads from it

    # -- reading --------------------------------------------------------------------------------
    def _band(self, index: int) -> gdal.Band:
        return self._ds.GetRasterBand(index)

    @property
    def count(self) -> int:
        return self._ds.RasterCount

    @property
    def width(self) -> int:
        return self._ds.RasterXSize

    @property
    def height(self) -> int:
        return self._ds.RasterYSize

    @property
    def indexes(self) -> list[int]:
        return list(range(1, self.count + 1))

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(self._band(b).DataType)).name
                     for b in self.indexes)

    @property
    def descriptions(self) -> tuple[str | None, ...]:
        return tuple(self._band(b).GetDescription() or None for b in self.indexes)

    def tags(self, bidx: int = 0) -> dict[str, str]:
        return dict((self._band(bidx) if bidx else self._ds).GetMetadata() or {})

    def get_tag_item(self, ns: str, dm: str | None = None, bidx: int = 0) -> str | None:
        """One metadata item of a domain (e.g. a GeoTIFF tile's ``BLOCK_OFFSET_0_0`` in "TIFF")."""
        return (self._band(bidx) if bidx else self._ds).GetMetadataItem(ns, dm or "") or None

    @property
    def subdatasets(self) -> list[str]:
        return [name for name, _ in self._ds.GetSubDatasets()]

    @property
    def crs(self) -> CRS | None:
        wkt = self._ds.GetProjection()
        return CRS(wkt) if wkt else None

    @property
    def transform(self) -> Affine:
        return Affine.from_gdal(self._ds.GetGeoTransform())

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        xs, ys = (t.c, t.c + t.a * self.width), (t.f, t.f + t.e * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def block_shapes(self) -> list[tuple[int, int]]:
        """(rows, cols) per band, as rasterio gives them (GDAL's GetBlockSize is x, y)."""
        return [tuple(reversed(self._band(b).GetBlockSize())) for b in self.indexes]

    @property
    def nodata(self) -> float | None:
        return self.nodatavals[0] if self.count else None

    @property
    def nodatavals(self) -> tuple[float | None, ...]:
        return tuple(self._band(b).GetNoDataValue() for b in self.indexes)

    @property
    def mask_flag_enums(self) -> list[list[MaskFlags]]:
        flags = [self._band(b).GetMaskFlags() for b in self.indexes]
        return [[m for m in MaskFlags if f & m.value] for f in flags]

    def _read(self, what: str, indexes: list[int] | int | None, window: Window | None,
              band_of: Callable[[int], gdal.Band]) -> np.ndarray:
        w = window or Window(0, 0, self.width, self.height)
        single = isinstance(indexes, int)
        bands = [indexes] if single else (indexes or self.indexes)
        arrays = [_call(f"reading {what} of {self.name}", band_of(b).ReadAsArray,
                        w.col_off, w.row_off, w.width, w.height) for b in bands]
        return arrays[0] if single else np.stack(arrays)

    def read(self, indexes: list[int] | int | None = None, window: Window | None = None) -> np.ndarray:
        return self._read("pixels", indexes, window, self._band)

    def read_masks(self, indexes: list[int] | int | None = None, window: Window | None = None) -> np.ndarray:
        return self._read("masks", indexes, window, lambda b: self._band(b).GetMaskBand())

    # -- writing --------------------------------------------------------------------------------
    def write(self, data: np.ndarray, window: Window) -> None:
        for k in range(data.shape[0]):
            err = _call(f"writing {self.name}", self._band(k + 1).WriteArray, data[k],
                        window.col_off, window.row_off)
            if err:
                raise RasterioIOError(f"writing {self.name}: {gdal.GetLastErrorMsg() or f'error {err}'}")

    def write_colormap(self, bidx: int, colormap: dict[int, tuple[int, int, int, int]]) -> None:
        table = gdal.ColorTable()
        for value, rgba in colormap.items():
            table.SetColorEntry(int(value), tuple(int(c) for c in rgba))
        _call(f"writing the colour table of {self.name}", self._band(bidx).SetRasterColorTable, table)

    def update_tags(self, bidx: int = 0, **tags: Any) -> None:
        target = self._band(bidx) if bidx else self._ds
        for key, value in tags.items():
            _call(f"writing metadata of {self.name}", target.SetMetadataItem, key, str(value))

    def set_band_description(self, bidx: int, text: str) -> None:
        self._band(bidx).SetDescription(text)

    # -- life -------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._ds is None

    def close(self) -> None:
        """Flush and close; a full disk shows up here as :class:`RasterioIOError`."""
        if self._ds is not None:
            try:
                _call(f"closing {self.name}", self._ds.FlushCache)
            finally:
                self._ds = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open(path: Any, mode: str = "r", **profile: Any) -> Dataset:
    """Open a raster for reading, or create a GeoTIFF from a rasterio-style profile (mode "w")."""
    path = str(path)
    if mode == "r":
        handle = _call(f"{path}", gdal.OpenEx, path, gdal.OF_RASTER | gdal.OF_READONLY)
        if handle is None:
            raise RasterioIOError(f"{path}: not recognised as a raster GDAL can read")
        return Dataset(handle, path)
    if mode != "w":
        raise ValueError(f"mode {mode!r} is not supported")
    p = dict(profile)
    options = [f"{k.upper()}={'YES' if v is True else v}" for k, v in p.items()
               if k in ("tiled", "blockxsize", "blockysize", "compress", "predictor", "BIGTIFF")]
    driver = gdal.GetDriverByName(p["driver"])
    gdal_type = gdal_array.NumericTypeCodeToGDALTypeCode(np.dtype(p["dtype"]).type)
    handle = _call(f"creating {path}", driver.Create, path, p["width"], p["height"], p["count"],
                   gdal_type, options)
    if handle is None:
        raise RasterioIOError(f"cannot create {path}: {gdal.GetLastErrorMsg()}")
    handle.SetGeoTransform(p["transform"].to_gdal())
    if p.get("crs") is not None:
        handle.SetProjection(p["crs"].wkt)
    if p.get("nodata") is not None:
        for b in range(1, p["count"] + 1):
            handle.GetRasterBand(b).SetNoDataValue(float(p["nodata"]))
    return Dataset(handle, path)


def WarpedVRT(src: Dataset, crs: CRS, transform: Affine, width: int, height: int,  # noqa: N802
              resampling: Resampling = Resampling.nearest, nodata: float | None = None,
              add_alpha: bool = False) -> Dataset:
    """``src`` resampled on the grid, window by window on read (an in-memory GDAL VRT)."""
    left, top = transform.c, transform.f
    right, bottom = left + transform.a * width, top + transform.e * height
    kwargs: dict[str, Any] = {}
    if nodata is not None:
        kwargs["dstNodata"] = "nan" if isinstance(nodata, float) and math.isnan(nodata) else nodata
    options = gdal.WarpOptions(
        format="VRT", outputBounds=(min(left, right), min(bottom, top), max(left, right), max(bottom, top)),
        width=width, height=height, dstSRS=crs.wkt, dstAlpha=add_alpha,
        resampleAlg=_GDAL_RESAMPLING.get(resampling.name, resampling.name), **kwargs,
    )
    handle = _call(f"resampling {src.name}", gdal.Warp, "", src._ds, options=options)
    if handle is None:
        raise RasterioIOError(f"resampling {src.name}: {gdal.GetLastErrorMsg()}")
    return Dataset(handle, src.name, source=src)


vrt = SimpleNamespace(WarpedVRT=WarpedVRT)
