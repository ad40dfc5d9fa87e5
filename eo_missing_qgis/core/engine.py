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
from .errors import Cancelled, InputError, ModelError, OutputError
from .model_card import ModelCard
from .preprocessing import standardize
from .providers import gpu_batch_note
from .raster_inputs import InputPlan, RasterInput, expand, match_inputs
from .raster_io import GeoTiffOutput, Grid, Source, check_destination, grid_of, open_raster
from .session import ModelSession, open_session
from .tiling import HaloTile, Window, aligned_tile, halo_tiles, windows
from .units import UNITS, implausible_fraction

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
    provider_note: str = ""  # why the GPU was not used, with the fix ('' when it was)


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

    def read(self, win: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Physical values (pixels, time, bands), or (1, time, bands, height, width) for a spatial
        card, per modality, NaN where missing, and which pixels (flat) can be predicted (every
        band valid at one time step at least).

        Runs in the read-ahead thread, so the transposition into the network's layout costs the
        model thread nothing.
        """
        raw = {}
        for n, bands in self.requests.items():
            data, missing = self.sources[n].read(bands, win)
            raw[n] = (data, missing, {b: k for k, b in enumerate(bands)})
        out = {}
        valid = np.ones(win.size, dtype=bool)
        for spec in self.plan.card.inputs:
            rows = self.plan.slots[spec.modality]
            phys = np.empty((len(rows), len(spec.bands), win.size), dtype=np.float32)
            for t, row in enumerate(rows):
                for c, slot in enumerate(row):
                    data, missing, where = raw[slot.input]
                    k = where[slot.band_index]
                    phys[t, c] = slot.encoding.to_physical(data[k]).ravel()
                    if missing[k].any():
                        phys[t, c][missing[k].ravel()] = np.nan
            valid &= np.isfinite(phys).any(axis=0).all(axis=0)
            if self.plan.card.spatial:
                out[spec.modality] = phys.reshape(1, *phys.shape[:2], win.height, win.width)
            else:
                out[spec.modality] = np.ascontiguousarray(phys.transpose(2, 0, 1))
        return out, valid

    def close(self) -> None:
        for s in self.sources.values():
            s.close()


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
    if session.provider_note:
        say(session.provider_note)
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
    return RunResult(paths, session.provider, predicted, nodata, seconds, warnings, grid.describe(),
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
