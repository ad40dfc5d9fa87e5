"""The run loop: a carded ONNX model over rasters, read -> preprocess -> ONNX Runtime -> GeoTIFF,
by window. The windows are read by :mod:`.reader`, sized by :mod:`.tiling`, written by
:mod:`.outputs`; the model step per window is below.

Memory stays flat in raster size: only a window (plus the next one, read ahead in a thread while
the model runs) is held at a time. A pixel gets nodata in every output, and is never sent to the
model, when one of the card's bands has no valid value at any of its time steps; single missing
time steps (clouds: the real WorldCereal cube lacks S2 for two whole months) are filled the way
training fills them, by :func:`.preprocessing.standardize` (the band mean). All outputs
(prediction, confidence, probabilities) go to temporary files moved into place together only when
the whole run succeeded, so an error or a cancel leaves nothing behind.

Per-pixel models (layout NTC) read disjoint windows. Spatial models (layout NTCHW, a halo of
context) read overlapping tiles grown by twice the halo, keep each prediction over the tile grown
by the halo, and blend the overlaps with weights that sum to one (:mod:`.blending`) before the
argmax. Their nodata pixels are still filled and seen as context by their neighbours; only tiles
without any valid pixel skip the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .blending import OverlapBlend
from .card import ModelCard
from .definitions import Device
from .errors import Cancelled, InputError, ModelError
from .outputs import create_outputs, output_paths, publish
from .preprocessing import standardize
from .providers import gpu_batch_note
from .raster_inputs import RasterInput, match_inputs
from .raster_io import GeoTiffOutput, check_destination
from .reader import WindowReader
from .session import ModelSession, open_session
from .tiling import HaloTile, Window, batch_size_for, halo_tiles, tile_for, windows
from .units import UNITS, implausible_fraction

_Reader = WindowReader  # the name the model-step functions below were written with


@dataclass
class RunOptions:
    """How to run: tile size (rounded to whole blocks), batch by ``batch_size`` or memory budget;
    ``confidence`` is where the confidence raster goes (default: next to the prediction)."""

    tile_size: int | None = None
    memory_mb: float = 512.0
    batch_size: int | None = None
    device: Device = Device.AUTO
    threads: int | None = None
    write_probabilities: bool = False
    reference: int | str = 0
    resampling: str = "nearest"
    confidence: str | None = None


@dataclass
class RunResult:
    """What a run wrote (output kind -> path), where and how, and the card of the model that ran,
    so callers style and describe the outputs without reading the model again."""

    outputs: dict[str, str]
    provider: str
    pixels_predicted: int
    pixels_nodata: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    grid: str = ""
    card: ModelCard | None = None
    provider_note: str = ""  # why the GPU was not used, with the fix ('' when it was)


def unit_warnings(physical: dict[str, np.ndarray], card: ModelCard, checked: set) -> list[str]:
    """Warn once per band whose decoded values are mostly outside the plausible range of its unit."""
    out = []
    for spec in card.inputs:
        phys = physical[spec.modality]
        for c, band in enumerate(spec.bands):
            key = (spec.modality, band.name)
            if key in checked:
                continue
            values = phys[:, :, c][np.isfinite(phys[:, :, c])]
            if values.size == 0:
                continue
            checked.add(key)
            median = float(np.median(values))
            # Backscatter in dB is negative over almost all land; a positive median means linear
            # power or reflectance was given, though such values lie inside the dB range.
            positive_db = band.unit == "dB" and median >= 0
            if implausible_fraction(values, band.unit) < 0.5 and not positive_db:
                continue
            lo, hi = UNITS[band.unit]
            if band.unit == "reflectance" and median > 20:
                hint = ("look like reflectance x 10000, not 0-1; "
                        "declare the encoding 'reflectance x 10000 (L2A DN)'")
            elif positive_db and median <= 2:
                hint = "look like reflectance or linear power, not dB; check the layer and its encoding"
            else:
                hint = f"are mostly outside {lo:g}..{hi:g} {band.unit}; check the layer and its encoding"
            out.append(f"values of {spec.modality} {band.name} (median {median:.4g}) {hint}")
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run_model(
    model: str | Path | ModelSession,
    inputs: list[RasterInput],
    output: str | Path,
    *,
    options: RunOptions | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Predict ``model`` over ``inputs`` onto the reference grid; see the module docstring.

    ``cancel`` is asked before every batch (from the model thread); when it returns True the run
    stops, removes its temporary files and raises :class:`.errors.Cancelled`.
    """
    options = options or RunOptions()
    start = time.perf_counter()
    warnings: list[str] = []

    def say(msg: str, warn: bool = False) -> None:
        if warn:
            warnings.append(msg)
        if log:
            log(("Warning: " if warn else "") + msg)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise Cancelled("the run was cancelled; no output was written")

    session = model if isinstance(model, ModelSession) else \
        open_session(model, options.device, options.threads)
    card = session.card
    say(f"model {card.name}: running on {session.provider}")
    if session.provider_note:
        say(session.provider_note)
    plan = match_inputs(card, inputs)
    for w in plan.warnings:
        say(w)
    paths = output_paths(output, card, options.write_probabilities, options.confidence)
    for p in paths.values():
        check_destination(p, [i.path for i in plan.inputs] + [session.path])
    grid, ref_path = plan.reference_grid(options.reference)
    say(f"reference grid from {ref_path}: {grid.describe()}")
    check_cancel()

    reader = WindowReader(plan, grid, options.resampling)
    if reader.warped:
        say(f"resampled onto the reference grid window by window ({options.resampling}): "
            f"{', '.join(reader.warped)}")
    tile = tile_for(card, options.tile_size, options.memory_mb, grid.block)
    batch = batch_size_for(card, options.memory_mb, options.batch_size)
    outs: dict[str, GeoTiffOutput] = {}
    predicted = nodata = 0
    try:
        outs = create_outputs(paths, card, grid)
        if card.spatial:
            say(f"tiles of {tile[0]} x {tile[1]} px, read with {2 * card.halo} px of context on each "
                f"side, blended over {2 * card.halo} px")
            tiles = halo_tiles(grid.height, grid.width, tile, card.halo)
            wins = [t.window("read") for t in tiles]
            blend = OverlapBlend(_values_per_pixel(card), grid.width)

            def predict(i: int, tensors: dict[str, np.ndarray], valid: np.ndarray) -> tuple[int, int]:
                return _predict_tile(session, card, tensors, valid, tiles[i], blend, outs, check_cancel)
        else:
            say(f"tiles of {tile[0]} x {tile[1]} px, batches of {batch} pixels")
            gpu_note = gpu_batch_note(session.provider, batch, tile[0] * tile[1])
            if gpu_note:
                say(gpu_note)
            wins = list(windows(grid.height, grid.width, tile))

            def predict(i: int, tensors: dict[str, np.ndarray], valid: np.ndarray) -> tuple[int, int]:
                n = _predict_window(session, card, tensors, valid, wins[i], outs, batch, check_cancel)
                return n, wins[i].size
        checked: set = set()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eo-read") as pool:
            pending: Future = pool.submit(_network_inputs, reader, card, wins[0], checked)
            for i in range(len(wins)):
                tensors, valid, messages = pending.result()
                if i + 1 < len(wins):
                    pending = pool.submit(_network_inputs, reader, card, wins[i + 1], checked)
                check_cancel()
                for msg in messages:
                    say(msg, warn=True)
                n, written = predict(i, tensors, valid)
                predicted += n
                nodata += written - n
                if progress:
                    progress((i + 1) / len(wins))
        if predicted == 0:
            raise InputError("every pixel misses at least one required input (all nodata); "
                             "nothing to predict — check the layers' nodata values and extents")
        publish(list(outs.values()))
    except BaseException:
        for o in outs.values():
            o.discard()
        raise
    finally:
        reader.close()
    seconds = time.perf_counter() - start
    say(f"predicted {predicted} pixels ({nodata} nodata) in {seconds:.1f} s")
    return RunResult(paths, session.provider, predicted, nodata, seconds, warnings, grid.describe(), card,
                     session.provider_note)


def _network_inputs(reader: _Reader, card: ModelCard, win: Window, checked: set
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Read-ahead thread: read one window, check its units, and standardise it into the network's
    tensors (only the valid pixels of a per-pixel model), so the model thread only runs the model.
    Returns the tensors, the valid mask and unit warnings."""
    physical, valid = reader.read(win)
    messages = unit_warnings(physical, card, checked)
    if card.spatial:
        return {s.tensor: standardize(physical[s.modality], s)[0] for s in card.inputs}, valid, messages
    idx = None if valid.all() else np.flatnonzero(valid)
    tensors = {s.tensor: standardize(physical[s.modality] if idx is None else physical[s.modality][idx], s)[0]
               for s in card.inputs}
    return tensors, valid, messages


def _predict_window(session: ModelSession, card: ModelCard, tensors: dict[str, np.ndarray],
                    valid: np.ndarray, win: Window, outs: dict[str, GeoTiffOutput], batch: int,
                    check_cancel: Callable[[], None]) -> int:
    """Predict the valid pixels of one window and write every output for it; returns their count."""
    idx = np.flatnonzero(valid)
    k = _values_per_pixel(card)
    result = np.empty((idx.size, k), dtype=np.float32)
    for b in range(0, idx.size, batch):
        check_cancel()
        feeds = {name: np.ascontiguousarray(x[b:b + batch]) for name, x in tensors.items()}
        result[b:b + batch] = np.asarray(session.run(feeds)[0], dtype=np.float32).reshape(-1, k)
    _write_results(card, result, idx, win, outs)
    return int(idx.size)


def _predict_tile(session: ModelSession, card: ModelCard, tensors: dict[str, np.ndarray],
                  valid: np.ndarray, tile: HaloTile, blend: OverlapBlend, outs: dict[str, GeoTiffOutput],
                  check_cancel: Callable[[], None]) -> tuple[int, int]:
    """Run a spatial model on one tile, blend, and write the pixels whose sum is complete; returns
    how many of them were predicted and how many were written."""
    read, keep = tile.window("read"), tile.window("keep")
    valid = valid.reshape(read.height, read.width)
    rows = slice(keep.row - read.row, keep.row - read.row + keep.height)
    cols = slice(keep.col - read.col, keep.col - read.col + keep.width)
    k = _values_per_pixel(card)
    if valid[rows, cols].any():
        check_cancel()
        raw = np.asarray(session.run(tensors)[0], dtype=np.float32)
        if raw.shape != (1, k, read.height, read.width):
            raise ModelError(f"model {card.name} returned {raw.shape} for a tile of {read.height} x "
                             f"{read.width} px; a spatial model must return (1, {k}, {read.height}, "
                             f"{read.width}), one value set per input pixel")
        prediction = raw[0, :, rows, cols]
    else:  # nothing to predict here: the tile's pixels all get nodata
        prediction = np.zeros((k, keep.height, keep.width), dtype=np.float32)
    done, sums = blend.add(tile, prediction)
    inside = valid[done.row - read.row:done.row - read.row + done.height,
                   done.col - read.col:done.col - read.col + done.width]
    idx = np.flatnonzero(inside)
    _write_results(card, sums.reshape(k, -1)[:, idx].T, idx, done, outs)
    return int(idx.size), done.size


def _values_per_pixel(card: ModelCard) -> int:
    return len(card.output.classes) if card.task == "classification" else 1


def _write_results(card: ModelCard, result: np.ndarray, idx: np.ndarray, win: Window,
                   outs: dict[str, GeoTiffOutput]) -> None:
    """Write the model's values ``result`` (pixels, values) for the flat pixels ``idx`` of ``win``;
    every other pixel of ``win`` gets nodata."""
    k = result.shape[1]
    shape = (win.height, win.width)
    if card.task == "classification":
        probs = _softmax(result) if card.output.activation == "none" else result
        ids = np.array([c.id for c in card.output.classes], dtype=np.uint8)
        cls = np.zeros(win.size, dtype=np.uint8)
        conf = np.full(win.size, np.nan, dtype=np.float32)
        cls[idx] = ids[probs.argmax(axis=1)] if idx.size else cls[idx]
        conf[idx] = probs.max(axis=1) if idx.size else conf[idx]
        outs["prediction"].write(cls.reshape(shape), win)
        outs["confidence"].write(conf.reshape(shape), win)
        if "probabilities" in outs:
            full = np.full((k, win.size), np.nan, dtype=np.float32)
            full[:, idx] = probs.T
            outs["probabilities"].write(full.reshape(k, *shape), win)
    else:
        value = np.full(win.size, np.nan, dtype=np.float32)
        value[idx] = result[:, 0] * np.float32(card.output.scale) + np.float32(card.output.offset)
        outs["prediction"].write(value.reshape(shape), win)
