"""Predict a carded model over an xarray dataset with Dask, on one machine or a cluster.

Every chunk goes through :func:`..block.predict_block` with ``dask.array.map_overlap`` (depth =
the card's halo, so a spatial model sees its context; Dask trims it again). Each worker process
opens the model once (:func:`.common.cached_session`); the model path must be readable there.
Chunk results stream back to the caller, which writes them window by window into the same tiled
GeoTIFFs as the local engine (colour table, class names, nodata), published together only when
every chunk succeeded, so a failed run leaves no file behind. Context inputs are computed as the
engine computes them: the month of each step from the dataset's dates (a datetime time
coordinate) or a calendar card's first month, latitude/longitude from each chunk's place on the grid.

    import xarray, distributed
    from eo_missing_qgis.core.scale.dask_predict import predict
    client = distributed.Client()           # or any cluster; without one Dask's threads are used
    ds = xarray.open_dataset("cube.nc", chunks={}, mask_and_scale=False).rio.write_crs("EPSG:32631")
    predict(ds, "crop_type_europe_s2.onnx", "crop.tif")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..block import BlockContext, BlockOutputs, physical_block, predict_block, unit_warnings
from ..card import ModelCard, read_card
from ..definitions import ContextKind
from ..engine import _write_results
from ..errors import InputError, missing_dependency
from ..outputs import create_outputs, output_paths, publish
from ..raster_io import Grid, check_destination, pixel_latlon
from ..tiling import Window
from ..units import Encoding
from .common import block_inputs, cached_session, step_months


def _dask_array():
    try:
        import dask.array
    except ImportError:
        raise missing_dependency("dask", "predict with Dask") from None
    return dask.array


def grid_of_xarray(data: Any, chunk: int) -> Grid:
    """The output grid from ``data``'s rioxarray georeferencing (CRS and x/y coordinates)."""
    try:
        import rioxarray  # noqa: F401 - registers the .rio accessor
    except ImportError:
        raise missing_dependency("rioxarray", "write Dask predictions as GeoTIFF") from None
    crs = data.rio.crs
    if crs is None:
        raise InputError("the dataset has no CRS; set one first, e.g. data.rio.write_crs('EPSG:32631')")
    return Grid(crs, data.rio.transform(recalc=True), data.rio.width, data.rio.height, (chunk, chunk))


def _context(data: Any, card: ModelCard, grid: Grid) -> tuple[list[int] | None, Grid | None]:
    """What a card's context inputs need that the chunks do not carry: the month of each step and,
    for latitude/longitude, the grid each chunk is placed on."""
    months = step_months(data, card, "dataset") if card.context_of(ContextKind.MONTH) else None
    return months, grid if card.context_of(ContextKind.LATLON) else None


def _predict_chunk(block: np.ndarray, *, model: str, device: str, threads: int | None,
                   encodings: dict[str, list[Encoding]], splits: list[int], probabilities: bool,
                   months: list[int] | None, grid: Grid | None, starts: tuple[list[int], list[int]],
                   halo: int, block_info: dict | None = None) -> np.ndarray:
    """One chunk (time, all bands, y, x) in a worker -> stacked outputs (layers, 1, y, x).
    ``starts``: the first row and column of each chunk before the overlap, to place the chunk
    (grown by ``halo`` on inner sides) on ``grid`` for latitude/longitude inputs."""
    session = cached_session(model, device, threads)
    parts = np.split(block, splits, axis=1)
    arrays = {spec.modality: part for spec, part in zip(session.card.inputs, parts, strict=True)}
    lat = lon = None
    if grid is not None and block_info:
        i, j = block_info[0]["chunk-location"][2:]
        win = Window(starts[0][i] - (halo if i else 0), starts[1][j] - (halo if j else 0), *block.shape[2:])
        lat, lon = pixel_latlon(grid, win)
    out = predict_block(arrays, session.card, session, encodings=encodings, probabilities=probabilities,
                        check_units=False,  # checked once, on the client
                        context=BlockContext(months, lat, lon))
    return out.stacked()[:, None]


def predict(data: Any, model: str | Path, output: str | Path, *,
            encodings: Mapping[str, Encoding | str] | None = None, probabilities: bool = False,
            chunk: int | None = None, device: str = "cpu", threads: int | None = 1,
            log: Callable[[str], None] | None = None) -> dict[str, str]:
    """Predict ``model`` over ``data`` (an xarray Dataset or DataArray, see :mod:`.common`) into
    ``output`` (confidence and probabilities next to it, as the local engine names them).

    ``chunk`` is the side of a chunk in pixels (default: the card's tile size, at least twice its
    halo); ``threads`` are ONNX Runtime's per worker (1 leaves the cores to Dask's workers).
    Returns the output paths by kind.
    """
    da = _dask_array()
    model = str(model)
    card = read_card(model)
    arrays, encs = block_inputs(data, card, encodings)
    size = max(chunk or card.tile_size, 2 * card.halo, 1)
    grid = grid_of_xarray(data, size)
    paths = output_paths(output, card, probabilities)
    for p in paths.values():
        check_destination(p, [model])
    stacked = da.concatenate([da.asarray(arrays[s.modality]) for s in card.inputs], axis=1)
    stacked = stacked.rechunk({0: -1, 1: -1, 2: size, 3: size})
    depth = {0: 0, 1: 0, 2: card.halo, 3: card.halo}
    layers = 1 if card.task != "classification" else 2 + probabilities * len(card.output.classes)
    grown = da.overlap.overlap(stacked, depth=depth, boundary="none").chunks
    splits = list(np.cumsum([len(s.bands) for s in card.inputs])[:-1])
    months, latlon_grid = _context(data, card, grid)
    starts = tuple([int(v) for v in np.cumsum((0, *c))[:-1]] for c in stacked.chunks[2:])
    result = da.map_overlap(
        _predict_chunk, stacked, depth=depth, boundary="none", trim=True, dtype=np.float32,
        chunks=((layers,), (1,), *grown[2:]), meta=np.empty((0, 0, 0, 0), np.float32),
        model=model, device=device, threads=threads, encodings=encs, splits=splits,
        probabilities=probabilities, months=months, grid=latlon_grid, starts=starts, halo=card.halo)
    rows = np.concatenate([[0], np.cumsum(result.chunks[2])])
    cols = np.concatenate([[0], np.cumsum(result.chunks[3])])
    if log:
        log(f"model {card.name}: {len(rows) - 1} x {len(cols) - 1} chunks of up to {size} px, "
            f"overlap {card.halo} px; {grid.describe()}")
    # Workers cannot warn the caller: the units are checked here, on the first chunk.
    first = {m: np.asarray(a[..., :size, :size]) for m, a in arrays.items()}
    for msg in unit_warnings(physical_block(first, card, encs), card, set()):
        if log:
            log(f"Warning: {msg}")
        else:
            warnings.warn(msg, UserWarning, stacklevel=2)
    outs = create_outputs(paths, card, grid)
    try:
        for (i, j), stack in _computed_blocks(result.to_delayed()[0, 0]):
            win = Window(int(rows[i]), int(cols[j]), int(rows[i + 1] - rows[i]), int(cols[j + 1] - cols[j]))
            _write_results(BlockOutputs.from_stacked(card, stack[:, 0]), win, outs)
        publish(outs)
    except BaseException:
        for o in outs.values():
            o.discard()
        raise
    return paths


def _computed_blocks(delayed: np.ndarray):
    """((row, col), numpy block) as blocks finish: on the active distributed client if there is
    one (results stream back as workers finish them), else one row of blocks at a time."""
    import dask

    keys = [(i, j) for i in range(delayed.shape[0]) for j in range(delayed.shape[1])]
    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        for i in range(delayed.shape[0]):
            yield from zip([(i, j) for j in range(delayed.shape[1])], dask.compute(*delayed[i]), strict=True)
        return
    futures = client.compute([delayed[k] for k in keys])
    where = {f.key: k for f, k in zip(futures, keys, strict=True)}
    for future, block in as_completed(futures, with_results=True):
        yield where[future.key], block
