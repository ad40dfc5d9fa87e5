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
from .block import (
    BlockContext,
    BlockOutputs,
    Prepared,
    finish_block,
    prepare_block,
    run_block,
    values_per_pixel,
)
from .card import ModelCard
from .definitions import ContextKind, Device, OutputKind
from .encoding_check import check_encodings
from .errors import Cancelled, InputError, OptionError
from .footprint import check_footprint
from .outputs import create_outputs, output_paths, publish
from .providers import gpu_batch_note
from .raster_inputs import RasterInput, match_inputs
from .raster_io import GeoTiffOutput, cache_limit, check_destination, outline_lonlat, pixel_latlon
from .reader import WindowReader
from .session import ModelSession, open_session
from .tiling import HaloTile, Window, batch_size_for, halo_tiles, tile_for, windows


@dataclass
class RunOptions:
    """How to run: tile size (rounded to whole blocks), batch by ``batch_size`` or memory budget;
    ``reference`` the grid (None: the finest input's; an input's number; a raster path);
    ``confidence`` is where the confidence raster goes (default: next to the prediction)."""

    tile_size: int | None = None
    memory_mb: float = 512.0
    batch_size: int | None = None
    device: Device = Device.AUTO
    threads: int | None = None
    write_probabilities: bool = False
    reference: int | str | None = None  # None: the finest input grid
    resampling: str = "nearest"
    confidence: str | None = None
    keep: tuple[str, ...] = ()  # files the caller was given but the model does not read: never written

    def __post_init__(self) -> None:
        # 0 or a negative size would be taken as "the card's default" or fail deep in the run.
        if self.tile_size is not None and self.tile_size < 1:
            raise OptionError(f"tile size must be at least 1 pixel, not {self.tile_size}")
        if not self.memory_mb > 0:  # also NaN
            raise OptionError(f"memory budget must be a positive number of MB, not {self.memory_mb:g}")


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
    months: str = ""  # the months used and missing, e.g. '1 of 12 months: 2021-06; missing: ...'


def run_model(
    model: str | Path | ModelSession,
    inputs: list[RasterInput],
    output: str | Path,
    *,
    options: RunOptions | None = None,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> RunResult:
    """Predict ``model`` over ``inputs`` onto the reference grid; see the module docstring.

    ``cancel`` is asked before every batch (from the model thread); when it returns True the run
    stops, removes its temporary files and raises :class:`.errors.Cancelled`. ``status`` gets a
    short text after every window (share done, time left) for a progress bar; the first estimate
    of the time left also goes to ``log``, as a warning when the run will take hours.
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
    say(plan.time.summary())
    step_months = plan.time.known_months(card.name) if card.context_of(ContextKind.MONTH) else None
    paths = output_paths(output, card, options.write_probabilities, options.confidence)
    for p in paths.values():  # every file given, used or not, is never written
        check_destination(p, [i.path for i in (*plan.inputs, *inputs)] + [session.path, *options.keep])
    grid, ref_path = plan.reference_grid(options.reference)
    say(f"reference grid from {ref_path}: {grid.describe()}")
    # The outline is transformed to lon/lat only for a card that has a footprint to compare it with.
    outside = check_footprint(card, outline_lonlat(grid)) if card.footprint else None
    if outside:
        say(outside.message, warn=True)
    check_cancel()

    reader = WindowReader(plan, grid, options.resampling)
    if reader.warped:
        say(f"resampled onto the reference grid window by window ({options.resampling}): "
            f"{', '.join(reader.warped)}")
    working_mb = working_budget(options.memory_mb)
    tile = tile_for(card, options.tile_size, working_mb, grid.block)
    batch = batch_size_for(card, working_mb, options.batch_size, session.bytes_per_pixel, session.provider)
    outs: dict[str, GeoTiffOutput] = {}
    predicted = nodata = 0
    try:
        with cache_limit(options.memory_mb * CACHE_SHARE):  # its reads stay inside the budget too
            for msg in check_encodings(plan, reader.sources, grid.height, grid.width):
                say(msg, warn=True)  # before any output exists: a refusal leaves nothing behind
        outs = create_outputs(paths, card, grid)
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
            gpu_note = gpu_batch_note(session.provider, batch, tile[0] * tile[1])
            if gpu_note:
                say(gpu_note)
            wins = list(windows(grid.height, grid.width, tile))

            def predict(i: int, prepared: Prepared) -> tuple[int, int]:
                n = _predict_window(session, card, prepared, wins[i], outs, batch, check_cancel)
                return n, wins[i].size
        checked: set = set()
        seen = np.zeros(card.time.steps, dtype=bool)
        latlon = bool(card.context_of(ContextKind.LATLON))
        clock = TimeLeft(grid.width * grid.height, len(wins))
        with cache_limit(options.memory_mb * CACHE_SHARE), \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="eo-read") as pool:
            pending: Future = pool.submit(_network_inputs, reader, card, wins[0], checked, step_months,
                                          latlon)
            for i in range(len(wins)):
                prepared = pending.result()
                if i + 1 < len(wins):
                    pending = pool.submit(_network_inputs, reader, card, wins[i + 1], checked, step_months,
                                          latlon)
                check_cancel()
                seen |= prepared.steps_seen
                for msg in prepared.messages:
                    say(msg, warn=True)
                n, written = predict(i, prepared)
                predicted += n
                nodata += written - n
                if progress:
                    progress((i + 1) / len(wins))
                note = clock.add(written)
                if note and i == 0:
                    long_run = note.seconds > LONG_RUN_SECONDS
                    say(note.log + ("; cancel and clip the layers to the area you need if that is too "
                                    "long" if long_run else ""), warn=long_run)
                if note and status:
                    status(note.status)
        if predicted == 0:
            raise InputError("every pixel misses at least one required input (all nodata); "
                             "nothing to predict — check the layers' nodata values and extents")
        months = plan.time.with_values(seen)
        if months.used != plan.time.used:
            empty = sorted(set(plan.time.used) - set(months.used), key=plan.time.labels.index)
            say(f"no valid values in {', '.join(empty)} (nodata or clouds): {months.summary()}")
        outs[OutputKind.PREDICTION].ds.update_tags(**months.tags(), **(outside.tags if outside else {}))
        for stale in publish(outs):
            say(f"removed {stale}: an earlier run to {paths['prediction']} wrote it and this run does not")
    except BaseException:
        for o in outs.values():
            o.discard()
        raise
    finally:
        reader.close()
    seconds = time.perf_counter() - start
    say(f"predicted {predicted} pixels ({nodata} nodata) in {seconds:.1f} s")
    return RunResult(paths, session.provider, predicted, nodata, seconds, warnings, grid.describe(), card,
                     session.provider_note, plan.time.summary())


#: How the memory budget (``RunOptions.memory_mb``) bounds a run's peak: GDAL's block cache gets
#: this share of it, the open datasets, threads and output writers the reserve (MB), and what is
#: left goes half to the windows in flight (:func:`.tiling.tile_for`), half to the network's
#: batches at the cost per pixel measured when the model was loaded (:func:`.tiling.batch_size_for`).
CACHE_SHARE = 1 / 8
RESERVE_MB = 12.0

def working_budget(memory_mb: float) -> float:
    """MB of the budget ``memory_mb`` left for the windows in flight and the network's batches
    once GDAL's cache and the reserve are taken; a budget that leaves nothing is refused."""
    working_mb = memory_mb * (1 - CACHE_SHARE) - RESERVE_MB
    if working_mb < 8:
        raise OptionError(f"a memory budget of {memory_mb:g} MB leaves nothing for the data; "
                          f"give at least {(8 + RESERVE_MB) / (1 - CACHE_SHARE):.0f} MB")
    return working_mb


#: A run expected to take longer than this is announced as a warning (the user may want to cancel).
LONG_RUN_SECONDS = 3600.0


@dataclass(frozen=True)
class Estimate:
    """The time left, as seconds and as the texts a log and a progress bar show."""

    seconds: float
    log: str
    status: str


class TimeLeft:
    """Estimates the time left from the pixels written so far: measured from the first window on,
    so a run of weeks over a huge raster says so after its first batches, not at the end."""

    def __init__(self, pixels: int, windows: int):
        self.pixels, self.windows = pixels, windows
        self.done = self.count = 0
        self.start = time.perf_counter()

    def add(self, written: int) -> Estimate | None:
        """Count one window of ``written`` pixels; the estimate, or None once all are written."""
        self.done += written
        self.count += 1
        if self.done <= 0 or self.done >= self.pixels:
            return None
        seconds = (time.perf_counter() - self.start) / self.done * (self.pixels - self.done)
        left = duration_text(seconds)
        share = 100 * self.done // self.pixels  # floored: 100 % only when done
        return Estimate(seconds, f"estimated time left: {left} (from the first {self.count} of "
                                 f"{self.windows} tiles, {self.pixels} pixels in all)",
                        f"{share} % done, {left} left")


def duration_text(seconds: float) -> str:
    """A duration in the largest units that say it plainly: '< 1 min', 'about 12 min',
    'about 3 h 20 min', 'about 5 days', 'about 3 weeks'."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "< 1 min"
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
    days = round(hours / 24)
    return f"about {days} days" if days < 21 else f"about {round(days / 7)} weeks"


def _network_inputs(reader: WindowReader, card: ModelCard, win: Window, checked: set,
                    months: list[int] | None, latlon: bool) -> Prepared:
    """Read-ahead thread: read one window and prepare it (decode, check units, mask, standardise,
    context inputs), so the model thread only runs the model."""
    lat, lon = pixel_latlon(reader.grid, win) if latlon else (None, None)
    return prepare_block(reader.read(win), card, checked=checked, context=BlockContext(months, lat, lon))


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
