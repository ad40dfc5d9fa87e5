"""Build the openEO process graph that runs a carded model next to the data, without connecting.

load_collection (SENTINEL2_L2A and/or SENTINEL1_GRD as sigma0) -> monthly median composites over
the card's time steps -> apply_neighborhood with :mod:`.openeo_udf` (size = the card's tile size,
overlap = its halo) -> band names -> one time label dropped -> GeoTIFF. The graph is written as
JSON for a user with an openEO account to submit (see the README); nothing here talks to a backend.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from ..block import output_names
from ..card import ModelCard, read_card
from ..definitions import ContextKind
from ..errors import InputError, missing_dependency

#: openEO collection of each modality the graph can load, and the encoding its values come in.
COLLECTIONS = {"S2": "SENTINEL2_L2A", "S1": "SENTINEL1_GRD"}
DEFAULT_ENCODINGS = {"S2": "reflectance x 10000 (L2A DN)", "S1": "linear power"}
UDF_FILE = Path(__file__).with_name("openeo_udf.py")


def _months(start: str, steps: int) -> list[str]:
    """[first day, first day after] of ``steps`` months from ``start`` (YYYY-MM)."""
    try:
        year, month = (int(p) for p in start.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise InputError(f"start must be a month as YYYY-MM, not {start!r}") from None
    end_month = month - 1 + steps
    return [first.isoformat(), date(year + end_month // 12, end_month % 12 + 1, 1).isoformat()]


def build_graph(card: ModelCard, model_url: str, bbox: tuple[float, float, float, float], start: str,
                *, crs: str = "EPSG:4326", encodings: dict[str, str] | None = None,
                probabilities: bool = False) -> dict[str, Any]:
    """The process graph (``{"process_graph": ...}``) predicting ``card``'s model over ``bbox``
    (west, south, east, north in ``crs``) for the months from ``start``."""
    try:
        from openeo import UDF
        from openeo.rest.datacube import THIS, DataCube
    except ImportError:
        raise missing_dependency("openeo", "build openEO process graphs") from None
    unsupported = [m for m in card.modalities if m not in COLLECTIONS]
    if unsupported:
        raise InputError(f"model {card.name} needs {', '.join(unsupported)}; the openEO graph can load "
                         f"{', '.join(COLLECTIONS)} only")
    computed = [c.kind.value for c in card.context if c.kind != ContextKind.MASK]
    if computed:
        raise InputError(f"model {card.name} takes {' and '.join(computed)} inputs, which the openEO UDF "
                         "does not compute yet; run it with the local engine (QGIS or the CLI)")
    first = card.time.first_month  # None: a schema 1.2 calendar card whose months come from dates
    if card.time.alignment == "calendar" and first and int(start.split("-")[-1]) != first:
        raise InputError(f"model {card.name} needs series starting in month {card.time.first_month}, "
                         f"not {start}")
    extent = dict(zip(("west", "south", "east", "north"), bbox, strict=True), crs=crs)
    months = _months(start, card.time.steps)
    cubes = []  # S2 first when present: the other modality is resampled onto its 10 m grid
    for spec in sorted(card.inputs, key=lambda s: s.modality != "S2"):
        cube = DataCube.load_collection(COLLECTIONS[spec.modality], connection=None, spatial_extent=extent,
                                        temporal_extent=months, bands=spec.band_names, fetch_metadata=False)
        if spec.modality == "S1":  # as a plain process: the client method asks a backend for options
            cube = cube.process("sar_backscatter", {"data": THIS, "coefficient": "sigma0-ellipsoid"})
        cubes.append(cube.aggregate_temporal_period(period="month", reducer="median"))
    cube = cubes[0]
    for other in cubes[1:]:
        cube = cube.merge_cubes(other.resample_cube_spatial(cubes[0], method="near"))
    context = {"model": model_url, "probabilities": probabilities,
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
                        crs=args.crs, encodings=encodings, probabilities=args.probabilities)
    Path(args.out).write_text(json.dumps(graph, indent=2), encoding="utf-8")
    return args.out
