"""openEO UDF: a carded ONNX model on one neighbourhood of a data cube, via ``predict_block``.

This file is sent whole as the UDF of ``apply_neighborhood`` (see :mod:`.openeo_graph`), so it
uses absolute imports and no ``from __future__ import annotations`` (openEO finds
``apply_datacube`` by its annotations). The backend must be able to import ``eo_missing_qgis``,
``onnxruntime`` and, for latitude/longitude inputs, rasterio (or GDAL's ``osgeo``): a job option
``udf-dependency-archives`` ``["<zip URL>#eo_missing_deps"]`` unpacks a zip of them into
:data:`DEPENDENCY_DIR`, which this file puts on ``sys.path``.

Context: ``model`` (a path readable by the backend, or an https URL, downloaded once per worker),
optional ``encodings`` ({modality: encoding preset name}, e.g. ``{"S1": "linear power"}``),
``probabilities`` (also return one band per class), ``crs`` (the cube's EPSG code, which the
UDF cannot see; the graph pins the cube to it) and ``bbox`` (the job's west, south, east, north in
degrees: a cube whose x/y do not place it there is refused, not given wrong latitudes). The cube
is (t, bands, y, x) with one label per month, oldest first. Context inputs (card schema 1.2) are
computed as the engine computes them: availability masks from the NaNs, the month of each step
from the ``t`` dates (else a calendar card's first month; never guessed), latitude/longitude from
the x/y pixel centres in ``crs`` (:func:`eo_missing_qgis.core.raster_io.pixel_latlon`). The result
keeps a ``t`` of one label (openEO's apply_neighborhood may not drop a dimension) and has the bands
named by :func:`eo_missing_qgis.core.block.output_names`. Overlap pixels are returned as computed;
the backend trims them.
"""

import hashlib
import logging
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import xarray
from openeo.udf import XarrayDataCube

#: Where a backend unpacks the job's dependency archive (relative to the UDF's working folder).
DEPENDENCY_DIR = "eo_missing_deps"
if Path(DEPENDENCY_DIR).is_dir() and DEPENDENCY_DIR not in sys.path:
    sys.path.insert(0, DEPENDENCY_DIR)

from eo_missing_qgis.core.block import BlockContext, output_names, predict_block  # noqa: E402
from eo_missing_qgis.core.card import ModelCard  # noqa: E402
from eo_missing_qgis.core.definitions import ContextKind  # noqa: E402
from eo_missing_qgis.core.errors import InputError  # noqa: E402
from eo_missing_qgis.core.raster_io import Grid, pixel_latlon, rasterio_module  # noqa: E402
from eo_missing_qgis.core.scale.common import block_inputs, cached_session, step_months  # noqa: E402
from eo_missing_qgis.core.tiling import Window  # noqa: E402


def model_file(model: str) -> str:
    """A local path for ``model``: itself, or an https URL downloaded once into the temp folder."""
    if not model.startswith(("http://", "https://")):
        return model
    if not model.startswith("https://"):
        raise InputError(f"model URL {model} must use https")
    target = Path(tempfile.gettempdir()) / "eo_missing_models" / (
        hashlib.sha256(model.encode()).hexdigest()[:16] + ".onnx")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        # https only (checked above), so no file:// or custom scheme reaches urlretrieve.
        urllib.request.urlretrieve(model, partial)  # nosec B310
        partial.replace(target)
    return str(target)


#: How far (degrees) a neighbourhood's centre may lie outside the job's bbox: its overlap and
#: padding (a 256 px tile of 10 m spans 0.03 degree) fit many times, while x/y in another CRS, or
#: pixel indices instead of coordinates, land hundreds of kilometres away.
BBOX_MARGIN_DEG = 0.5


def _spacing(coords: np.ndarray, axis: str) -> float:
    """The pixel size along ``axis`` from its pixel-centre coordinates, which must be evenly spaced."""
    steps = np.diff(coords.astype(np.float64))
    if steps.size == 0:
        raise InputError(f"the cube is 1 pixel along {axis}: its pixel size, needed for latitude/longitude, "
                         "is unknown")
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        raise InputError(f"the cube's {axis} coordinates are not evenly spaced pixel centres")
    return float(steps[0])


def cube_latlon(cube: xarray.DataArray, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees, WGS 84) of every pixel centre of ``cube``, each (y, x), from
    its x/y coordinates (pixel centres, as openEO labels them) in ``EPSG:<epsg>``."""
    x, y = cube["x"].values, cube["y"].values
    dx, dy = _spacing(x, "x"), _spacing(y, "y")
    rio = rasterio_module()
    try:
        crs = rio.CRS.from_user_input(f"EPSG:{int(epsg)}")
    except Exception as exc:  # an unknown code: rasterio's CRSError or GDAL's error
        raise InputError(f"the UDF context's crs {epsg!r} is not a known EPSG code ({exc})") from None
    transform = rio.Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)
    grid = Grid(crs, transform, len(x), len(y), (len(y), len(x)))
    return pixel_latlon(grid, Window(0, 0, len(y), len(x)))


def _check_place(lat: np.ndarray, lon: np.ndarray, bbox: list, epsg: int) -> None:
    """Refuse a cube whose centre, read in ``EPSG:<epsg>``, lies outside the job's ``bbox``."""
    west, south, east, north = (float(v) for v in bbox)
    mid = (lat.shape[0] // 2, lat.shape[1] // 2)
    mid_lat, mid_lon, m = float(lat[mid]), float(lon[mid]), BBOX_MARGIN_DEG
    if not (south - m <= mid_lat <= north + m and west - m <= mid_lon <= east + m):
        raise InputError(f"the cube's centre is at latitude {mid_lat:.4f}, longitude {mid_lon:.4f} when its "
                         f"x/y are read in EPSG:{epsg}, outside the job's bbox ({west:g}, {south:g}, "
                         f"{east:g}, {north:g}): its x/y are not in that CRS, so latitude/longitude inputs "
                         "would be wrong")


def cube_context(cube: xarray.DataArray, card: ModelCard, context: dict) -> BlockContext:
    """What the card's month and latitude/longitude inputs need, from the cube and the UDF context."""
    months = step_months(cube, card, "cube") if card.context_of(ContextKind.MONTH) else None
    if not card.context_of(ContextKind.LATLON):
        return BlockContext(months)
    if context.get("crs") is None:
        raise InputError(f"model {card.name} takes each pixel's latitude/longitude: the UDF context needs "
                         "'crs', the cube's EPSG code (the graph from openeo-graph sets it)")
    lat, lon = cube_latlon(cube, context["crs"])
    if context.get("bbox") is not None:
        _check_place(lat, lon, context["bbox"], context["crs"])
    return BlockContext(months, lat, lon)


def predict_cube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """The model's maps over ``cube`` (t, bands, y, x) as (t: 1, bands, y, x) float32."""
    if "model" not in context:
        raise InputError("the UDF context needs 'model': a model path or https URL")
    session = cached_session(model_file(str(context["model"])), context.get("device", "cpu"),
                             context.get("threads"))
    card = session.card
    probabilities = bool(context.get("probabilities", False))
    arrays, encodings = block_inputs(cube, card, context.get("encodings"))
    out = predict_block(arrays, card, session, encodings=encodings, probabilities=probabilities,
                        context=cube_context(cube, card, context))
    for msg in out.warnings:  # in the job's log
        logging.getLogger(__name__).warning(msg)
    tdim = "t" if "t" in cube.dims else "time"
    coords = {tdim: cube[tdim].values[:1], "bands": output_names(card, probabilities),
              "y": cube["y"].values, "x": cube["x"].values}
    return xarray.DataArray(out.stacked()[None], dims=(tdim, "bands", "y", "x"), coords=coords)


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    """openEO's entry point: see the module docstring."""
    return XarrayDataCube(predict_cube(cube.get_array(), context or {}))
