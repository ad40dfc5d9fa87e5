"""Build the openEO process graph that runs a carded model next to the data, without connecting.

load_collection (SENTINEL2_L2A and/or SENTINEL1_GRD as sigma0) -> S2 observations the scene
classification calls cloud, shadow, saturated or no data, and impossible values, masked -> monthly
median composites over the card's time steps -> resample_spatial to the cube's CRS -> apply_neighborhood with
:mod:`.openeo_udf` (size = the card's tile size, overlap = its halo; context: the model, encodings,
that CRS's EPSG code and the bbox in degrees, from which the UDF computes and checks each pixel's
latitude/longitude) -> band names -> one time label dropped -> GeoTIFF. The cube's CRS is pinned
rather than assumed: by default the UTM zone of the bbox centre, the grid Sentinel collections are
loaded on. The graph is written as JSON for a user with an openEO account to submit (see the
README); nothing here talks to a backend.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from ..block import output_names
from ..card import ModelCard, read_card
from ..errors import InputError, missing_dependency
from ..raster_io import rasterio_module

#: openEO collection of each modality the graph can load, and the encoding its values come in.
COLLECTIONS = {"S2": "SENTINEL2_L2A", "S1": "SENTINEL1_GRD"}
DEFAULT_ENCODINGS = {"S2": "reflectance x 10000 (L2A DN)", "S1": "linear power"}
UDF_FILE = Path(__file__).with_name("openeo_udf.py")
#: Sentinel-2 scene classification (SCL) classes left out of the monthly composites: no data (0),
#: saturated or defective (1), cloud shadow (3), cloud medium / high probability (8, 9), thin
#: cirrus (10), as in WorldCereal's preprocessing of the training data.
SCL_MASKED = (0, 1, 3, 8, 9, 10)
#: Largest S2 L2A value (reflectance x 10 000) that is a reflectance (the engine's physical limit).
S2_MAX_DN = 10000


def _months(start: str, steps: int) -> list[str]:
    """[first day, first day after] of ``steps`` months from ``start`` (YYYY-MM)."""
    try:
        year, month = (int(p) for p in start.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise InputError(f"start must be a month as YYYY-MM, not {start!r}") from None
    end_month = month - 1 + steps
    return [first.isoformat(), date(year + end_month // 12, end_month % 12 + 1, 1).isoformat()]


def lonlat_bounds(bbox: tuple[float, float, float, float], crs: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees, WGS 84, of ``bbox`` (in ``crs``): its corners and
    edge midpoints."""
    w, s, e, n = bbox
    xs, ys = [w, e, w, e, (w + e) / 2, (w + e) / 2, w, e], [s, s, n, n, s, n, (s + n) / 2, (s + n) / 2]
    rio = rasterio_module()
    try:
        lon, lat = rio.warp.transform(rio.CRS.from_user_input(crs), "EPSG:4326", xs, ys)
    except Exception as exc:  # a CRS PROJ does not know
        raise InputError(f"the bbox CRS {crs!r} cannot be converted to latitude/longitude ({exc})") from None
    return min(lon), min(lat), max(lon), max(lat)


def utm_epsg(lonlat: tuple[float, float, float, float]) -> int:
    """EPSG code of the WGS 84 UTM zone of the centre of ``lonlat`` (west, south, east, north)."""
    lon, lat = (lonlat[0] + lonlat[2]) / 2, (lonlat[1] + lonlat[3]) / 2
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def epsg_code(text: str) -> int:
    """``EPSG:32631`` or ``32631`` as the integer code openEO processes take."""
    code = text.strip().upper().removeprefix("EPSG:")
    if not code.isdigit():
        raise InputError(f"the cube's CRS must be an EPSG code such as EPSG:32631, not {text!r}")
    return int(code)


def clear_observations(cube: Any, band_names: list[str]) -> Any:
    """``cube`` (S2 L2A bands + SCL) as ``band_names`` with the observations of :data:`SCL_MASKED`
    and the values above :data:`S2_MAX_DN` masked, so that a cloudy or saturated date does not
    pull a month's median (the engine leaves such dates out of its composites too)."""
    scl = cube.band("SCL")
    cloudy = None
    for value in SCL_MASKED:
        cloudy = (scl == value) if cloudy is None else cloudy.logical_or(scl == value)
    clear = cube.filter_bands(band_names).mask(cloudy)
    return clear.mask(clear > S2_MAX_DN)


def build_graph(card: ModelCard, model_url: str, bbox: tuple[float, float, float, float], start: str,
                *, crs: str = "EPSG:4326", cube_epsg: int | None = None,
                encodings: dict[str, str] | None = None, probabilities: bool = False) -> dict[str, Any]:
    """The process graph (``{"process_graph": ...}``) predicting ``card``'s model over ``bbox``
    (west, south, east, north in ``crs``) for the months from ``start``, computed on a cube in
    ``EPSG:<cube_epsg>`` (default: :func:`utm_epsg` of the bbox). The UDF context carries that
    code and the bbox in degrees, against which the UDF checks where its pixels lie."""
    try:
        from openeo import UDF
        from openeo.rest.datacube import THIS, DataCube
    except ImportError:
        raise missing_dependency("openeo", "build openEO process graphs") from None
    unsupported = [m for m in card.modalities if m not in COLLECTIONS]
    if unsupported:
        raise InputError(f"model {card.name} needs {', '.join(unsupported)}; the openEO graph can load "
                         f"{', '.join(COLLECTIONS)} only")
    first = card.time.first_month  # None: a schema 1.2 calendar card whose months come from dates
    if card.time.alignment == "calendar" and first and int(start.split("-")[-1]) != first:
        raise InputError(f"model {card.name} needs series starting in month {card.time.first_month}, "
                         f"not {start}")
    extent = dict(zip(("west", "south", "east", "north"), bbox, strict=True), crs=crs)
    months = _months(start, card.time.steps)
    cubes = []  # S2 first when present: the other modality is resampled onto its 10 m grid
    for spec in sorted(card.inputs, key=lambda s: s.modality != "S2"):
        bands = [*spec.band_names, "SCL"] if spec.modality == "S2" else spec.band_names
        cube = DataCube.load_collection(COLLECTIONS[spec.modality], connection=None, spatial_extent=extent,
                                        temporal_extent=months, bands=bands, fetch_metadata=False)
        if spec.modality == "S1":  # as a plain process: the client method asks a backend for options
            cube = cube.process("sar_backscatter", {"data": THIS, "coefficient": "sigma0-ellipsoid"})
        else:
            cube = clear_observations(cube, spec.band_names)
        cubes.append(cube.aggregate_temporal_period(period="month", reducer="median"))
    cube = cubes[0]
    for other in cubes[1:]:
        cube = cube.merge_cubes(other.resample_cube_spatial(cubes[0], method="near"))
    lonlat = lonlat_bounds(bbox, crs)
    epsg = cube_epsg if cube_epsg is not None else utm_epsg(lonlat)
    # The CRS the UDF is told; a plain process: the client method forgets the cube's dimensions.
    cube = cube.process("resample_spatial", {"data": THIS, "resolution": 0, "projection": epsg,
                                             "method": "near", "align": "upper-left"})
    context = {"model": model_url, "probabilities": probabilities, "crs": epsg, "bbox": list(lonlat),
               "encodings": {m: (encodings or {}).get(m, DEFAULT_ENCODINGS[m]) for m in card.modalities}}
    udf = UDF(UDF_FILE.read_text(encoding="utf-8"), runtime="Python", context=context)
    size = [{"dimension": d, "value": card.tile_size, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": card.halo, "unit": "px"} for d in ("x", "y")]
    cube = cube.apply_neighborhood(process=udf, size=size, overlap=overlap)
    cube = cube.rename_labels(dimension="bands", target=output_names(card, probabilities))
    cube = cube.reduce_dimension(dimension="t", reducer="first")
    return json.loads(cube.save_result(format="GTiff").to_json())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``openeo-graph`` subcommand's options."""
    p.add_argument("--model", required=True, help="the ONNX model (its card shapes the graph)")
    p.add_argument("--model-url", help="where the backend loads the model from (https URL or a path "
                   "the backend can read); default: --model")
    p.add_argument("--bbox", required=True, type=float, nargs=4, metavar=("WEST", "SOUTH", "EAST", "NORTH"))
    p.add_argument("--crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326)")
    p.add_argument("--cube-crs", help="EPSG code the cube is computed in, which the UDF converts pixel "
                   "centres from for latitude/longitude inputs (default: the UTM zone of the bbox centre)")
    p.add_argument("--start", required=True, help="first month, YYYY-MM")
    p.add_argument("--encoding", action="append", default=[], metavar="MODALITY=PRESET",
                   help="encoding of a modality's values on the backend, e.g. 'S1=linear power'")
    p.add_argument("--probabilities", action="store_true", help="also return one band per class")
    p.add_argument("--out", required=True, help="process graph JSON to write")


def write_graph(args: argparse.Namespace) -> str:
    """Build the graph from parsed ``openeo-graph`` options, write it, return its path."""
    encodings = {}
    for item in args.encoding:
        modality, sep, name = item.partition("=")
        if not sep:
            raise InputError(f"--encoding must be MODALITY=PRESET, not {item!r}")
        encodings[modality.strip()] = name.strip()
    graph = build_graph(read_card(args.model), args.model_url or args.model, tuple(args.bbox), args.start,
                        crs=args.crs, cube_epsg=epsg_code(args.cube_crs) if args.cube_crs else None,
                        encodings=encodings, probabilities=args.probabilities)
    Path(args.out).write_text(json.dumps(graph, indent=2), encoding="utf-8")
    return args.out
