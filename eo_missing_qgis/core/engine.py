"""Run a carded ONNX model over rasters: read -> preprocess -> ONNX Runtime -> GeoTIFF, by window.

Memory stays flat in raster size: only a window (plus the next one, read ahead in a thread while
the model runs) is held at a time. A pixel gets nodata in every output, and is never sent to the
model, when one of the card's bands has no valid value at any of its time steps; single missing
time steps (clouds: the real WorldCereal cube lacks S2 for two whole months) are filled the way
training fills them, by :func:`.preprocessing.standardize` (the band mean). Outputs go to
temporary files moved into place only when the whole run succeeded, so an error or a cancel
leaves nothing behind.

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
from .block import BlockOutputs, Prepared, finish_block, prepare_block, run_block, values_per_pixel
from .errors import Cancelled, InputError, OutputError
from .model_card import ModelCard
from .raster_inputs import InputPlan, RasterInput, expand, match_inputs
from .raster_io import GeoTiffOutput, Grid, Source, check_destination, grid_of, open_raster
from .session import ModelSession, open_session
from .tiling import HaloTile, Window, aligned_tile, halo_tiles, windows

#: Bytes a pixel costs per input value while a window is in flight (raw, physical, standardised).
_BYTES_PER_VALUE = 16


@dataclass
class RunOptions:
    """How to run: tile size (rounded to whole blocks), batch by ``batch_size`` or memory budget."""

    tile_size: int | None = None
    memory_mb: float = 512.0
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    write_probabilities: bool = False
    reference: int | str = 0
    resampling: str = "nearest"


@dataclass
class RunResult:
    outputs: dict[str, str]
    provider: str
    pixels_predicted: int
    pixels_nodata: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    grid: str = ""


class CancelToken:
    """Set from any thread; the run stops before its next batch."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


def output_paths(output: str | Path, card: ModelCard, probabilities: bool) -> dict[str, str]:
    """Main raster at ``output``; confidence and probabilities next to it (classification only)."""
    out = Path(output)
    paths = {"prediction": str(out)}
    if card.task == "classification":
        paths["confidence"] = str(out.with_name(f"{out.stem}_confidence.tif"))
        if probabilities:
            paths["probabilities"] = str(out.with_name(f"{out.stem}_probabilities.tif"))
    return paths


def reference_grid(reference: int | str, inputs: list[RasterInput]) -> tuple[Grid, str]:
    if isinstance(reference, int):
        if not 0 <= reference < len(inputs):
            raise InputError(f"reference input {reference} does not exist (there are {len(inputs)} inputs)")
        path = expand([inputs[reference]])[0].path
    else:
        path = str(reference)
    with open_raster(path) as ds:
        return grid_of(ds), path


class _Reader:
    """Reads one window of every input needed and decodes it to physical units, per modality."""

    def __init__(self, plan: InputPlan, grid: Grid, resampling: str):
        self.plan = plan
        self.sources: dict[int, Source] = {}
        try:
            for n in plan.used:
                self.sources[n] = Source(plan.inputs[n].path, grid, resampling)
        except BaseException:
            self.close()
            raise
        self.requests: dict[int, list[int]] = {}
        for rows in plan.slots.values():
            for row in rows:
                for s in row:
                    self.requests.setdefault(s.input, [])
                    if s.band_index not in self.requests[s.input]:
                        self.requests[s.input].append(s.band_index)
        for n, bands in self.requests.items():
            src = self.sources[n]
            if max(bands) > src.count:
                raise InputError(f"{plan.inputs[n].label} has {src.count} raster bands, "
                                 f"band {max(bands)} needed")

    @property
    def warped(self) -> list[str]:
        return [self.plan.inputs[n].label for n, s in self.sources.items() if s.warped]

    def read(self, win: Window) -> dict[str, np.ndarray]:
        """Physical values (time, bands, height, width) per modality, NaN where missing: the
        input convention of :mod:`.block`."""
        raw = {}
        for n, bands in self.requests.items():
            data, missing = self.sources[n].read(bands, win)
            raw[n] = (data, missing, {b: k for k, b in enumerate(bands)})
        out = {}
        for spec in self.plan.card.inputs:
            rows = self.plan.slots[spec.modality]
            phys = np.empty((len(rows), len(spec.bands), win.height, win.width), dtype=np.float32)
            for t, row in enumerate(rows):
                for c, slot in enumerate(row):
                    data, missing, where = raw[slot.input]
                    k = where[slot.band_index]
                    phys[t, c] = slot.encoding.to_physical(data[k])
                    if missing[k].any():
                        phys[t, c][missing[k]] = np.nan
            out[spec.modality] = phys
        return out

    def close(self) -> None:
        for s in self.sources.values():
            s.close()


def batch_size_for(card: ModelCard, options: RunOptions) -> int:
    if options.batch_size is not None:
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {options.batch_size}")
        return options.batch_size
    values = card.time.steps * sum(len(s.bands) for s in card.inputs)
    return max(64, int(options.memory_mb * 2**20 / 4 / (values * _BYTES_PER_VALUE)))


def tile_for(card: ModelCard, options: RunOptions, grid: Grid) -> tuple[int, int]:
    """Block-aligned tile, shrunk so two windows in flight fit in half the memory budget. A spatial
    model reads each tile grown by twice its halo on every side, and needs tiles of at least
    twice the halo so that a tile overlaps only its neighbours."""
    requested = options.tile_size or card.tile_size
    if requested < 1:
        raise ValueError(f"tile_size must be at least 1, not {requested}")
    values = card.time.steps * sum(len(s.bands) for s in card.inputs)
    fit = int((options.memory_mb * 2**20 / 4 / (values * _BYTES_PER_VALUE)) ** 0.5) - 4 * card.halo
    th, tw = aligned_tile(max(16, min(requested, fit)), grid.block)
    return max(th, 2 * card.halo), max(tw, 2 * card.halo)


def _outputs(paths: dict[str, str], card: ModelCard, grid: Grid) -> dict[str, GeoTiffOutput]:
    made: dict[str, GeoTiffOutput] = {}
    try:
        if card.task == "classification":
            main = GeoTiffOutput(paths["prediction"], grid, 1, "uint8", 0, [card.output.name])
            made["prediction"] = main
            main.describe_classes(card.output.classes, card.title)
            made["confidence"] = GeoTiffOutput(paths["confidence"], grid, 1, "float32", float("nan"),
                                               ["confidence (max probability)"])
            if "probabilities" in paths:
                made["probabilities"] = GeoTiffOutput(
                    paths["probabilities"], grid, len(card.output.classes), "float32", float("nan"),
                    [f"probability {c.name}" for c in card.output.classes])
        else:
            unit = card.output.unit
            main = GeoTiffOutput(paths["prediction"], grid, 1, "float32", float("nan"),
                                 [f"{card.output.name} ({unit})"])
            main.ds.update_tags(1, UNIT=unit, NAME=card.output.name)
            made["prediction"] = main
    except BaseException:
        for o in made.values():
            o.discard()
        raise
    return made


def publish(outs: list[GeoTiffOutput]) -> None:
    """Close every output first (a full disk fails here), then move them all into place; if a move
    fails, the ones already moved are removed again so no partial set is left."""
    for o in outs:
        o.close()
    moved: list[GeoTiffOutput] = []
    try:
        for o in outs:
            o.move_into_place()
            moved.append(o)
    except OSError as exc:
        for o in moved:
            o.path.unlink(missing_ok=True)
        raise OutputError(f"cannot move the output into place at {o.path}: {exc.strerror or exc}") from None


def run_model(
    model: str | Path | ModelSession,
    inputs: list[RasterInput],
    output: str | Path,
    *,
    options: RunOptions | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: CancelToken | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Predict ``model`` over ``inputs`` onto the reference grid; see the module docstring."""
    options = options or RunOptions()
    start = time.perf_counter()
    warnings: list[str] = []

    def say(msg: str, warn: bool = False) -> None:
        if warn:
            warnings.append(msg)
        if log:
            log(("Warning: " if warn else "") + msg)

    def check_cancel() -> None:
        if cancel is not None and cancel.cancelled:
            raise Cancelled("the run was cancelled; no output was written")

    session = model if isinstance(model, ModelSession) else \
        open_session(model, options.device, options.threads)
    card = session.card
    say(f"model {card.name}: running on {session.provider}")
    for w in session.warnings:
        say(w, warn=True)
    plan = match_inputs(card, inputs)
    for w in plan.warnings:
        say(w)
    paths = output_paths(output, card, options.write_probabilities)
    for p in paths.values():
        check_destination(p, [i.path for i in plan.inputs] + [session.path])
    grid, ref_path = reference_grid(options.reference, inputs)
    say(f"reference grid from {ref_path}: {grid.describe()}")
    check_cancel()

    reader = _Reader(plan, grid, options.resampling)
    if reader.warped:
        say(f"resampled onto the reference grid window by window ({options.resampling}): "
            f"{', '.join(reader.warped)}")
    tile = tile_for(card, options, grid)
    batch = batch_size_for(card, options)
    outs: dict[str, GeoTiffOutput] = {}
    predicted = nodata = 0
    try:
        outs = _outputs(paths, card, grid)
        if card.spatial:
            say(f"tiles of {tile[0]} x {tile[1]} px, read with {2 * card.halo} px of context on each "
                f"side, blended over {2 * card.halo} px")
            tiles = halo_tiles(grid.height, grid.width, tile, card.halo)
            wins = [t.window("read") for t in tiles]
            blend = OverlapBlend(values_per_pixel(card), grid.width)

            def predict(i: int, prepared: Prepared) -> tuple[int, int]:
                return _predict_tile(session, card, prepared, tiles[i], blend, outs, check_cancel)
        else:
            say(f"tiles of {tile[0]} x {tile[1]} px, batches of {batch} pixels")
            wins = list(windows(grid.height, grid.width, tile))

            def predict(i: int, prepared: Prepared) -> tuple[int, int]:
                n = _predict_window(session, card, prepared, wins[i], outs, batch, check_cancel)
                return n, wins[i].size
        checked: set = set()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eo-read") as pool:
            pending: Future = pool.submit(_network_inputs, reader, card, wins[0], checked)
            for i in range(len(wins)):
                prepared = pending.result()
                if i + 1 < len(wins):
                    pending = pool.submit(_network_inputs, reader, card, wins[i + 1], checked)
                check_cancel()
                for msg in prepared.messages:
                    say(msg, warn=True)
                n, written = predict(i, prepared)
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
    return RunResult(paths, session.provider, predicted, nodata, seconds, warnings, grid.describe())


def _network_inputs(reader: _Reader, card: ModelCard, win: Window, checked: set) -> Prepared:
    """Read-ahead thread: read one window and prepare it (decode, check units, mask, standardise),
    so the model thread only runs the model."""
    return prepare_block(reader.read(win), card, checked=checked)


def _predict_window(session: ModelSession, card: ModelCard, prepared: Prepared, win: Window,
                    outs: dict[str, GeoTiffOutput], batch: int, check_cancel: Callable[[], None]) -> int:
    """Predict the valid pixels of one window and write every output for it; returns their count."""
    values = run_block(session, card, prepared, batch, check_cancel)
    _write_results(finish_block(card, values, prepared.valid, "probabilities" in outs), win, outs)
    return int(prepared.valid.sum())


def _predict_tile(session: ModelSession, card: ModelCard, prepared: Prepared, tile: HaloTile,
                  blend: OverlapBlend, outs: dict[str, GeoTiffOutput],
                  check_cancel: Callable[[], None]) -> tuple[int, int]:
    """Run a spatial model on one tile, blend, and write the pixels whose sum is complete; returns
    how many of them were predicted and how many were written."""
    read, keep = tile.window("read"), tile.window("keep")
    rows = slice(keep.row - read.row, keep.row - read.row + keep.height)
    cols = slice(keep.col - read.col, keep.col - read.col + keep.width)
    if prepared.valid[rows, cols].any():
        prediction = run_block(session, card, prepared, check_cancel=check_cancel)[:, rows, cols]
    else:  # nothing to predict here: the tile's pixels all get nodata
        prediction = np.zeros((values_per_pixel(card), keep.height, keep.width), dtype=np.float32)
    done, sums = blend.add(tile, prediction)
    inside = prepared.valid[done.row - read.row:done.row - read.row + done.height,
                            done.col - read.col:done.col - read.col + done.width]
    _write_results(finish_block(card, sums, inside, "probabilities" in outs), done, outs)
    return int(inside.sum()), done.size


def _write_results(result: BlockOutputs, win: Window, outs: dict[str, GeoTiffOutput]) -> None:
    """Write one block's maps into every output over ``win``."""
    outs["prediction"].write(result.prediction, win)
    if result.confidence is not None:
        outs["confidence"].write(result.confidence, win)
    if result.probabilities is not None:
        outs["probabilities"].write(result.probabilities, win)
