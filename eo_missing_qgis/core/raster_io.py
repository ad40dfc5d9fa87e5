"""Raster reading and writing with rasterio, window by window, or with QGIS's own GDAL bindings
(:mod:`.gdal_backend`) where rasterio is absent.

rasterio is imported only inside these functions, so the rest of ``core`` loads without it. Its
wheel bundles its own GDAL and PROJ; inside QGIS another GDAL/PROJ is loaded in the same process
and may point PROJ at an older ``proj.db``, so rasterio is always told to use its own.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputError, missing_dependency
from .tiling import Window

_NETCDF = re.compile(r'^(?:NETCDF|HDF5|HDF4_SDS|GPKG):"?([^"]+?)"?:([^:]+)$', re.IGNORECASE)
_rasterio: Any = None


def rasterio_module():
    """rasterio, imported on first use, with PROJ pointed at rasterio's bundled database.

    Without rasterio (a QGIS whose Python lacks it), or with ``EO_MISSING_RASTER_BACKEND=gdal``,
    :mod:`.gdal_backend`: QGIS's own ``osgeo.gdal`` behind the same calls.
    """
    global _rasterio
    if _rasterio is None:
        _rasterio = _gdal_backend() if os.environ.get("EO_MISSING_RASTER_BACKEND") == "gdal" \
            else _import_rasterio()
    return _rasterio


@contextlib.contextmanager
def cache_limit(mb: float) -> Iterator[None]:
    """Hold GDAL's block cache to ``mb`` MB while the block runs: by default it may take 5 % of
    the machine's memory, outside any memory budget (restored afterwards)."""
    rio = rasterio_module()
    if not hasattr(rio, "Env"):  # QGIS's osgeo.gdal behind gdal_backend
        from osgeo import gdal

        before = gdal.GetCacheMax()
        gdal.SetCacheMax(max(1, int(mb)) * 2**20)
        try:
            yield
        finally:
            gdal.SetCacheMax(before)
        return
    with rio.Env(GDAL_CACHEMAX=max(1, int(mb))):
        yield


def _import_rasterio():
    try:
        import rasterio
        import rasterio.vrt
        import rasterio.warp
        import rasterio.windows
    except ImportError:
        return _gdal_backend()
    from rasterio import _env

    bundled = Path(rasterio.__file__).parent / "proj_data"
    if (bundled / "proj.db").is_file():
        _env.set_proj_data_search_path(str(bundled))
    return rasterio


def _gdal_backend():
    try:
        from . import gdal_backend
    except ImportError:  # neither rasterio nor GDAL's Python bindings (a Python without QGIS)
        raise missing_dependency("rasterio", "read and write rasters") from None
    return gdal_backend


def file_of(path: str) -> str:
    """The file behind a GDAL path (``NETCDF:"f.nc":var`` -> ``f.nc``; other paths unchanged)."""
    m = _NETCDF.match(path.strip())
    return m.group(1) if m else path


def subdataset_name(path: str) -> str | None:
    """The variable of a ``NETCDF:"f.nc":var`` style path, else None."""
    m = _NETCDF.match(path.strip())
    return m.group(2) if m else None


def same_file(a: str, b: str) -> bool:
    """Whether two GDAL paths point at the same file."""
    try:
        return os.path.realpath(file_of(a)) == os.path.realpath(file_of(b))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Grid:
    """The reference grid outputs are written on."""

    crs: Any
    transform: Any
    width: int
    height: int
    block: tuple[int, int]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        t = self.transform
        xs = [t.c, t.c + t.a * self.width]
        ys = [t.f, t.f + t.e * self.height]
        return min(xs), min(ys), max(xs), max(ys)

    def describe(self) -> str:
        """Size, pixel size and CRS, for the log."""
        crs = self.crs.to_string() if self.crs else "no CRS"
        return (f"{self.width} x {self.height} px, pixel {abs(self.transform.a):g} x "
                f"{abs(self.transform.e):g}, {crs}")


@dataclass(frozen=True)
class RasterHeader:
    """What a run needs to know of an input raster before reading pixels, read once per run.

    ``descriptions`` are the band descriptions, or for a one-band netCDF variable its
    ``long_name``; ``nodata`` is the first band's nodata value; ``metadata`` the dataset's and the
    first band's metadata items (e.g. a Sentinel-2 product's ``BOA_ADD_OFFSET``).
    """

    path: str
    count: int
    dtype: str
    descriptions: tuple[str, ...]
    nodata: float | None
    crs: Any
    transform: Any
    width: int
    height: int
    block: tuple[int, int]
    bounds: tuple[float, float, float, float]
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def grid(self) -> Grid:
        """The raster's own grid; an input without georeferencing is refused here."""
        if self.crs is None or self.transform.is_identity:
            raise InputError(
                f"{self.path} has no coordinate reference system or geotransform; georeference it first"
            )
        return Grid(self.crs, self.transform, self.width, self.height, self.block)


def read_header(path: str) -> RasterHeader:
    """Open ``path`` once and keep its header (see :class:`RasterHeader`)."""
    with open_raster(path) as ds:
        descriptions = [d or "" for d in ds.descriptions]
        if not any(descriptions):  # netCDF keeps the variable name in tags, not descriptions
            descriptions = [ds.tags(b).get("long_name", "") if ds.count == 1 else "" for b in ds.indexes]
        block = ds.block_shapes[0] if ds.block_shapes else (256, 256)
        return RasterHeader(path, ds.count, ds.dtypes[0], tuple(descriptions), ds.nodata, ds.crs,
                            ds.transform, ds.width, ds.height, (int(block[0]), int(block[1])),
                            tuple(ds.bounds), {**ds.tags(), **ds.tags(1)})


def subdatasets(path: str) -> list[str]:
    """The subdatasets of a container file (a netCDF with one variable per band), else []."""
    if not (Path(path).is_file() and path.lower().endswith((".nc", ".nc4", ".h5", ".hdf"))):
        return []
    rio = rasterio_module()
    try:
        with warnings.catch_warnings():  # a container has no geotransform of its own
            warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)
            with rio.open(path) as ds:
                return list(ds.subdatasets)
    except rio.errors.RasterioIOError:
        return []


def open_raster(path: str):
    """Open ``path`` for reading; an unreadable or empty raster is an :class:`InputError`."""
    rio = rasterio_module()
    if not subdataset_name(path) and not Path(path).exists() and "://" not in path \
            and not path.startswith("/vsi"):
        raise InputError(f"input {path} does not exist")
    try:
        with warnings.catch_warnings():  # georeferencing is checked, with a clear message, by the header
            warnings.simplefilter("ignore", rio.errors.NotGeoreferencedWarning)
            ds = rio.open(path)
    except rio.errors.RasterioIOError as exc:
        raise InputError(f"input {path} cannot be read as a raster ({_first_line(exc)})") from None
    if ds.count == 0 or ds.width == 0 or ds.height == 0:
        subs = ds.subdatasets
        ds.close()
        hint = f"; it holds subdatasets, e.g. {subs[0]}" if subs else ""
        raise InputError(f"input {path} holds no raster bands (empty raster){hint}")
    return ds


def _first_line(exc: BaseException) -> str:
    """The first line of an error, followed by GDAL's own message when rasterio only refers to it
    ("Read failed. See previous exception for details.": a VRT's missing source file, say)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is exc or not str(cause).strip():
        return text
    return f"{text.replace('See previous exception for details.', '').strip()} (GDAL: {_first_line(cause)})"


def same_grid(a: Grid, b: Grid) -> bool:
    """Whether two grids match pixel for pixel (so no resampling is needed)."""
    return (a.width, a.height) == (b.width, b.height) and a.crs == b.crs and \
        a.transform.almost_equals(b.transform, precision=1e-9 * max(1.0, abs(a.transform.a)))


#: Pixels between the nodes where :func:`pixel_latlon` asks PROJ; the others are interpolated.
LATLON_NODE_STEP = 16
#: Largest interpolation error (degrees, ~1 cm) :func:`pixel_latlon` accepts, checked at the cell
#: centres. UTM at 10 m pixels errs by ~6e-9 degree there (curvature x spacing^2 / 8), at 20 m
#: by ~2e-8; coarser grids fall back to transforming every pixel.
LATLON_MAX_ERROR = 1e-7


def pixel_latlon(grid: Grid, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees, WGS 84) of every pixel centre of ``win``, each (height,
    width): the backend's CRS maths (rasterio's PROJ, or QGIS's ``osr``), one implementation.

    PROJ costs ~2 us a point, as much as the model for a per-pixel network, so it transforms a node
    every :data:`LATLON_NODE_STEP` pixels and the centres of the cells between them; the pixels
    are interpolated bilinearly when the centres agree within :data:`LATLON_MAX_ERROR`, else
    every pixel is transformed (e.g. a window across the antimeridian)."""
    rows = np.unique(np.r_[0:win.height:LATLON_NODE_STEP, win.height - 1])
    cols = np.unique(np.r_[0:win.width:LATLON_NODE_STEP, win.width - 1])
    if len(rows) > 2 or len(cols) > 2:
        mid_r, mid_c = (rows[:-1] + rows[1:]) / 2, (cols[:-1] + cols[1:]) / 2
        nodes = _latlon(grid, win, rows[:, None], cols[None, :])
        checked = _latlon(grid, win, mid_r[:, None], mid_c[None, :])
        guess = [_bilinear(v, rows, cols, mid_r, mid_c) for v in nodes]
        if max(float(np.abs(g - c).max()) for g, c in zip(guess, checked, strict=True)) <= LATLON_MAX_ERROR:
            every_r, every_c = np.arange(win.height), np.arange(win.width)
            lat, lon = (_bilinear(v, rows, cols, every_r, every_c) for v in nodes)
            return lat, lon
    return _latlon(grid, win, np.arange(win.height)[:, None], np.arange(win.width)[None, :])


def outline_lonlat(grid: Grid, per_side: int = 16) -> np.ndarray:
    """(lon, lat) degrees of ``per_side`` points along each edge of ``grid`` and of its centre, (n, 2):
    enough to place a whole input against a model's training footprint without transforming every pixel."""
    left, bottom, right, top = grid.bounds
    f = np.linspace(0.0, 1.0, per_side)
    xs = np.r_[left + f * (right - left), np.full(per_side, right), right - f * (right - left),
               np.full(per_side, left), (left + right) / 2]
    ys = np.r_[np.full(per_side, top), top - f * (top - bottom), np.full(per_side, bottom),
               bottom + f * (top - bottom), (bottom + top) / 2]
    try:
        lon, lat = rasterio_module().warp.transform(grid.crs, "EPSG:4326", xs, ys)
    except Exception as exc:  # a CRS that PROJ cannot take to WGS 84
        raise InputError(f"the grid's CRS ({grid.describe()}) cannot be converted to latitude/longitude "
                         f"({_first_line(exc)})") from None
    return np.column_stack([lon, lat])


def _latlon(grid: Grid, win: Window, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of the pixel centres at (broadcast) window ``rows`` x ``cols``."""
    rows, cols = np.broadcast_arrays(rows + win.row + 0.5, cols + win.col + 0.5)
    t = grid.transform
    xs, ys = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
    try:
        lon, lat = rasterio_module().warp.transform(grid.crs, "EPSG:4326", xs.ravel(), ys.ravel())
    except Exception as exc:  # a CRS that PROJ cannot take to WGS 84
        raise InputError(f"the grid's CRS ({grid.describe()}) cannot be converted to latitude/longitude "
                         f"({_first_line(exc)})") from None
    return np.asarray(lat).reshape(rows.shape), np.asarray(lon).reshape(rows.shape)


def _bilinear(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, at_r: np.ndarray,
              at_c: np.ndarray) -> np.ndarray:
    """``values`` known on the grid ``rows`` x ``cols`` (increasing), interpolated bilinearly at
    ``at_r`` x ``at_c``: two small matrix products with the linear interpolation weights."""
    return _weights(rows, at_r) @ values @ _weights(cols, at_c).T


def _weights(nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(len(at), len(nodes)) linear interpolation weights: two per row, summing to one."""
    k = np.clip(np.searchsorted(nodes, at, side="right") - 1, 0, len(nodes) - 2)
    t = (at - nodes[k]) / (nodes[k + 1] - nodes[k])
    w = np.zeros((len(at), len(nodes)))
    w[np.arange(len(at)), k] = 1 - t
    w[np.arange(len(at)), k + 1] = t
    return w


def overlaps(header: RasterHeader, grid: Grid) -> bool:
    """Whether the raster's footprint intersects the grid (in the grid's CRS)."""
    rio = rasterio_module()
    try:
        left, bottom, right, top = rio.warp.transform_bounds(header.crs, grid.crs, *header.bounds,
                                                             densify_pts=21)
    except Exception:  # a footprint that does not project into the grid's CRS at all
        return False
    g = grid.bounds
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        return False
    return left < g[2] and right > g[0] and bottom < g[3] and top > g[1]


def pixel_area(header: RasterHeader, other: RasterHeader) -> float:
    """The area of one pixel of ``header`` in the CRS units of ``other``, so pixel sizes of rasters
    in different CRSs (metres, degrees) compare."""
    _ = header.grid, other.grid  # refuses an input without georeferencing, clearly
    left, bottom, right, top = header.bounds
    if header.crs != other.crs:
        left, bottom, right, top = rasterio_module().warp.transform_bounds(
            header.crs, other.crs, left, bottom, right, top, densify_pts=21)
    return abs((right - left) * (top - bottom)) / (header.width * header.height)


class Source:
    """One input raster read on the reference grid, window by window.

    A raster on the grid itself is read directly; any other (another CRS, resolution or extent)
    goes through a ``WarpedVRT`` that resamples only the window asked for, so no full scene is
    ever warped in memory. Pixels outside the raster come back as missing.
    """

    def __init__(self, header: RasterHeader, grid: Grid, resampling: str = "nearest"):
        rio = rasterio_module()
        self.path = path = header.path
        self.warped = not same_grid(header.grid, grid)
        if self.warped and not overlaps(header, grid):
            raise InputError(
                f"input {path} does not overlap the reference grid ({grid.describe()}); "
                "choose layers that cover the same area"
            )
        self.ds = open_raster(path)  # for its pixels: the header was read before
        self.reader = self.ds
        self._alpha = False
        if self.warped:
            kw: dict[str, Any] = {}
            if header.nodata is None:
                if np.issubdtype(np.dtype(header.dtype), np.floating):
                    kw["nodata"] = np.nan
                else:
                    kw["add_alpha"] = True
                    self._alpha = True
            self.reader = rio.vrt.WarpedVRT(
                self.ds, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                resampling=rio.enums.Resampling[resampling], **kw,
            )
        flags = [set(f) for f in self.reader.mask_flag_enums]
        self._mask_band = self._alpha or any(
            rio.enums.MaskFlags.per_dataset in f or rio.enums.MaskFlags.alpha in f for f in flags
        )
        self.nodata = self.reader.nodatavals

    def read(self, indexes: list[int], win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Raw values (k, h, w) of 1-based ``indexes`` and a ``missing`` mask of the same shape."""
        rio = rasterio_module()
        w = rio.windows.Window(win.col, win.row, win.width, win.height)
        try:
            data = self.reader.read(indexes, window=w)
        except rio.errors.RasterioError as exc:
            raise InputError(f"reading {self.path} failed: {_first_line(exc)}") from None
        missing = np.zeros(data.shape, dtype=bool)
        for k, band in enumerate(indexes):
            nd = self.nodata[band - 1]
            if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
                missing[k] |= data[k] == np.asarray(nd).astype(data.dtype)
        if self._mask_band:
            masks = self.reader.read_masks(indexes, window=w)
            missing |= masks == 0
        return data, missing

    def close(self) -> None:
        """Close the raster (and its resampling view)."""
        if self.reader is not self.ds:
            self.reader.close()
        self.ds.close()


# -- writing -------------------------------------------------------------------------------------
#: File name endings of the one format outputs are written in (GeoTIFF).
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def check_destination(path: str, inputs: list[str]) -> None:
    """Refuse a destination that cannot be written, would overwrite an input, or whose extension
    names a format other than GeoTIFF (its file would hold a GeoTIFF under a misleading name)."""
    dest = Path(path)
    if dest.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name such as {dest / 'prediction.tif'}")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"the folder of output {path} does not exist; create {parent} first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write output {path}: the folder {parent} is not writable")
    for src in inputs:
        if same_file(src, path):
            raise OutputError(f"output {path} is also an input ({src}); choose another file name")
    if dest.suffix.lower() not in GEOTIFF_SUFFIXES:
        named = f"names the {dest.suffix} format" if dest.suffix else "has no extension"
        raise OutputError(f"output {path} {named}, but outputs are written as GeoTIFF only; name it "
                          f"{dest.with_suffix('.tif')} (convert it afterwards with gdal_translate if needed)")


def color_rgba(hex_color: str) -> tuple[int, int, int, int]:
    """'#RRGGBB' as an opaque RGBA tuple."""
    return int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16), 255


def _first_missing_block(ds, size: int) -> str:
    """The first tile of a closed GeoTIFF that is not wholly inside its ``size`` bytes or does not
    decode, described ('' when every tile of every band is there and reads back)."""
    rio = rasterio_module()
    rows, cols = ds.block_shapes[0]
    for i in range(math.ceil(ds.height / rows)):
        for j in range(math.ceil(ds.width / cols)):
            where = f"tile row {i} column {j}"
            for band in ds.indexes:
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=band)
                length = ds.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=band)
                if not offset or not length or int(offset) == 0 or int(offset) + int(length) > size:
                    return f"band {band}, {where}"
            window = rio.windows.Window(j * cols, i * rows, min(cols, ds.width - j * cols),
                                        min(rows, ds.height - i * rows))
            try:
                ds.read(window=window)
            except (rio.errors.RasterioError, OSError):
                return f"{where} (unreadable)"
    return ""


class GeoTiffOutput:
    """A tiled, compressed GeoTIFF on the grid, written to a hidden temporary file first.

    :meth:`close` then :meth:`move_into_place` publish it; :meth:`discard` deletes it, so a failed
    or cancelled run leaves nothing behind.
    """

    def __init__(self, path: str, grid: Grid, count: int, dtype: str, nodata: float,
                 descriptions: list[str] | None = None):
        rio = rasterio_module()
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.partial.tif")
        predictor = 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2
        side = min(grid.width, grid.height)
        block = 256 if side >= 256 else 16 * max(1, side // 16)
        profile = dict(
            driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
            crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True,
            blockxsize=block, blockysize=block, compress="deflate", predictor=predictor,
            BIGTIFF="IF_SAFER",
        )
        try:
            self.ds = rio.open(self.tmp, "w", **profile)
        except (rio.errors.RasterioIOError, OSError) as exc:
            raise OutputError(f"cannot create output {self.path}: {_first_line(exc)}") from None
        for k, text in enumerate(descriptions or []):
            self.ds.set_band_description(k + 1, html.escape(text))

    def write(self, data: np.ndarray, win: Window) -> None:
        """Write (bands, h, w) or (h, w) values into ``win``; a full disk is an OutputError."""
        rio = rasterio_module()
        w = rio.windows.Window(win.col, win.row, win.width, win.height)
        try:
            self.ds.write(data if data.ndim == 3 else data[None], window=w)
        except (rio.errors.RasterioIOError, rio.errors.RasterioError, OSError) as exc:
            raise OutputError(f"writing {self.path} failed (disk full?): {_first_line(exc)}") from None

    def describe_classes(self, classes, title: str) -> None:
        """Colour table and class names as GDAL metadata, so any GIS shows the legend."""
        self.ds.write_colormap(1, {0: (0, 0, 0, 0), **{c.id: color_rgba(c.color) for c in classes}})
        self.tag(1, **{f"CLASS_{c.id}": c.name for c in classes})
        self.tag(0, CLASS_NAMES=";".join(f"{c.id}={c.name}" for c in classes), TITLE=title)

    def tag(self, band: int, **texts: str) -> None:
        """Metadata items (``band`` 0: the dataset's) HTML-escaped: QGIS shows them as HTML, and
        card strings come from whoever made the model."""
        self.ds.update_tags(band, **{k: html.escape(str(v)) for k, v in texts.items()})

    def close(self) -> None:
        """Flush and close the temporary file (where a full disk shows up), then check every block
        reached the file: GDAL reports a failed final flush only on stderr, and a block that never
        reached the disk reads back as nodata, a silently wrong map."""
        rio = rasterio_module()
        try:
            self.ds.close()
            with rio.open(self.tmp) as ds:
                size = self.tmp.stat().st_size
                missing = _first_missing_block(ds, size)
        except (rio.errors.RasterioIOError, rio.errors.RasterioError, OSError) as exc:
            raise OutputError(f"writing {self.path} failed (disk full?): {_first_line(exc)}") from None
        if missing:
            raise OutputError(f"writing {self.path} failed (disk full?): {missing} did not reach the "
                              f"file ({size} bytes written)")

    def move_into_place(self) -> None:
        """Rename the closed temporary file to the destination."""
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Delete the temporary file (and its .aux.xml)."""
        # The file is deleted next; a failing close must not hide the error that got us here.
        with contextlib.suppress(Exception):
            if not self.ds.closed:
                self.ds.close()
        self.tmp.unlink(missing_ok=True)
        Path(f"{self.tmp}.aux.xml").unlink(missing_ok=True)
