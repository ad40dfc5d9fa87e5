"""Windows over a raster grid: aligned to its blocks, optionally overlapping, with blend weights.

Per-pixel models read disjoint windows that cover the grid exactly once. Models with a spatial
halo read each window grown by the halo and their predictions are blended with weights that fall
off towards the window edges and sum to one over every pixel. The tile and batch sizes come from
the card and the memory budget (:func:`tile_for`, :func:`batch_size_for`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .card import ModelCard
from .providers import CPU

#: Bytes a pixel costs per input value while a window is in flight (raw values and masks per layer,
#: decoded, physical, standardised, pixels first: 13-16 measured by ``peak_growth`` of one window's
#: read and preparation, 300² to 500² px, crop_type_s2 and a 12-month S1 + S2 MLP with context;
#: doubled, less what small budgets need for fixed costs: 24 let a 48 MB run peak at 49 MB).
_BYTES_PER_VALUE = 30
#: Bytes a pixel is assumed to cost per input value inside the network where its cost cannot be
#: measured: the bundled TempCNNs take about 220 (23 KB for 12 months x 9 bands).
_NETWORK_BYTES_PER_VALUE = 320
#: Device memory a GPU batch may take (MB): what a 4 GB laptop GPU has free next to a desktop.
GPU_MEMORY_MB = 1024
#: Most pixels in one CPU batch. A time-as-channels Gemm student (crop_type_europe_s2, 105 k
#: multiply-adds per pixel, 2 threads, idle machine) runs at 0.83 M px/s (2.0 us CPU per pixel,
#: 56-61 % of a 1152² MatMul) in batches of 2048, at 0.97-0.98 M px/s (1.84-1.87 us, 68-71 %) in
#: batches of 8192 or 16384: larger Gemms amortise each call's thread hand-offs. 8192 pixels cost
#: ~35 MB of activations (4.2 kB each); smaller memory budgets shrink the batch below it.
CPU_MAX_BATCH = 8192


@dataclass(frozen=True)
class Window:
    """A rectangle of the grid in pixels: rows ``row .. row+height``, cols ``col .. col+width``."""

    row: int
    col: int
    height: int
    width: int

    @property
    def size(self) -> int:
        """Pixels in the window."""
        return self.height * self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the window in a grid-sized array."""
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def aligned_tile(requested: int, block: tuple[int, int]) -> tuple[int, int]:
    """Tile (height, width) that is a whole number of blocks and close to ``requested``.

    Reading whole blocks avoids decoding a compressed block twice. Blocks much larger than the
    request (strips one row high and the whole raster wide) are cut to ``requested`` instead, so
    a tile never holds more than about ``requested``² pixels.
    """
    out = []
    for b in (max(1, block[0]), max(1, block[1])):
        out.append(requested if b > 2 * requested else max(1, round(requested / b)) * b)
    return out[0], out[1]


def windows(height: int, width: int, tile: tuple[int, int]) -> Iterator[Window]:
    """Disjoint windows covering the grid exactly once, row-major."""
    th, tw = tile
    if height <= 0 or width <= 0:
        return
    for r in range(0, height, th):
        for c in range(0, width, tw):
            yield Window(r, c, min(th, height - r), min(tw, width - c))


def axis_weights(total: int, tile: int, halo: int) -> list[tuple[int, np.ndarray]]:
    """Blend weights along one axis for cores of ``tile`` pixels grown by ``halo``.

    Returns, per core in order, (start of its grown span, weights over that span). Each grown
    span gets a ramp rising over its first ``2 * halo`` pixels and falling over its last ones
    (flat at the grid edges); dividing by the sum of all ramps makes the weights of every pixel
    sum to one whatever the tile, halo and remainder sizes.
    """
    spans, total_raw = [], np.zeros(total, dtype=np.float64)
    for start in range(0, total, tile):
        a, b = max(0, start - halo), min(total, start + tile + halo)
        x = np.arange(a, b, dtype=np.float64)
        raw = np.ones(b - a)
        if halo > 0:
            if a > 0:
                raw = np.minimum(raw, (x - a + 0.5) / (2 * halo))
            if b < total:
                raw = np.minimum(raw, (b - x - 0.5) / (2 * halo))
        spans.append((a, raw))
        total_raw[a:b] += raw
    return [(a, (raw / total_raw[a:a + len(raw)]).astype(np.float32)) for a, raw in spans]


def blend_weights(height: int, width: int, tile: tuple[int, int],
                  halo: int) -> Iterator[tuple[Window, np.ndarray]]:
    """Grown windows and their 2-D weights (outer product of the axis weights); over all windows
    the weights of every pixel sum to one, so blended logits are a convex combination."""
    for r0, wy in axis_weights(height, tile[0], halo):
        for c0, wx in axis_weights(width, tile[1], halo):
            yield Window(r0, c0, len(wy), len(wx)), np.outer(wy, wx)


@dataclass(frozen=True)
class AxisSpan:
    """One core along an axis, for a spatial model (all ranges are [start, stop) in pixels).

    ``keep``: the core grown by the halo, where the model's prediction is kept with ``weights``;
    ``read``: ``keep`` grown by the halo again, so every kept prediction saw ``halo`` pixels of
    context on each side (less only at the grid edge, where the whole-grid run sees the same);
    ``done``: the part whose blended sum is complete once this span and those before it are in.
    The ``done`` ranges of all spans partition the axis.
    """

    keep: tuple[int, int]
    read: tuple[int, int]
    done: tuple[int, int]
    weights: np.ndarray


def axis_spans(total: int, tile: int, halo: int) -> list[AxisSpan]:
    """Spans along one axis; a span overlaps only its neighbours, hence ``tile >= 2 * halo``."""
    if tile < 2 * halo:
        raise ValueError(f"tile {tile} must be at least twice the halo {halo}")
    weights = axis_weights(total, tile, halo)
    out = []
    for n, (a, w) in enumerate(weights):
        b = a + len(w)
        done_end = weights[n + 1][0] if n + 1 < len(weights) else total
        out.append(AxisSpan((a, b), (max(0, a - halo), min(total, b + halo)), (a, done_end), w))
    return out


@dataclass(frozen=True)
class HaloTile:
    """A tile of a spatial run: row ``i``, column ``j`` of the tile grid, with its two axis spans."""

    i: int
    j: int
    rows: AxisSpan
    cols: AxisSpan

    def window(self, part: str) -> Window:
        """The ``keep``, ``read`` or ``done`` rectangle as a window."""
        (r0, r1), (c0, c1) = getattr(self.rows, part), getattr(self.cols, part)
        return Window(r0, c0, r1 - r0, c1 - c0)

    @property
    def weights(self) -> np.ndarray:
        """Blend weights over the tile's keep window, (height, width)."""
        return np.outer(self.rows.weights, self.cols.weights)


def halo_tiles(height: int, width: int, tile: tuple[int, int], halo: int) -> list[HaloTile]:
    """The tiles of a spatial run, row-major; weights are built per tile on demand, so the list
    costs memory in proportion to the number of tiles, not pixels."""
    rows, cols = axis_spans(height, tile[0], halo), axis_spans(width, tile[1], halo)
    return [HaloTile(i, j, r, c) for i, r in enumerate(rows) for j, c in enumerate(cols)]


# -- sizing: how much to read and run at a time ------------------------------------------------
def batch_size_for(card: ModelCard, memory_mb: float, batch_size: int | None = None,
                   network_bytes_per_pixel: float | None = None, provider: str = CPU) -> int:
    """Pixels per model call: ``batch_size`` when given, else as many as fit in half of
    ``memory_mb`` (the windows in flight take the other half, :func:`tile_for`) at the network's
    measured cost per pixel (:attr:`.session.ModelSession.bytes_per_pixel`), or an assumed one,
    and at most :data:`CPU_MAX_BATCH` on the CPU.

    On a GPU provider (any ``provider`` but the CPU's) the network's activations live in device
    memory, not in the process, and every call pays a copy to the device and kernel launches: the
    batch is as many pixels as :data:`GPU_MEMORY_MB` of device memory holds at the same cost per
    pixel, never fewer than on the CPU. The engine caps it at the window (one call per window).
    """
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        return batch_size
    values = card.time.steps * sum(len(s.bands) for s in card.inputs)
    per_pixel = network_bytes_per_pixel or values * _NETWORK_BYTES_PER_VALUE
    cpu = max(1, min(CPU_MAX_BATCH, int(memory_mb * 2**20 / 2 / per_pixel)))
    return cpu if provider == CPU else max(cpu, int(GPU_MEMORY_MB * 2**20 / per_pixel))


def tile_for(card: ModelCard, tile_size: int | None, memory_mb: float,
             block: tuple[int, int]) -> tuple[int, int]:
    """Block-aligned tile, shrunk so two windows in flight fit in half the memory budget (cut
    off the blocks when whole blocks would not fit). A spatial
    model reads each tile grown by twice its halo on every side, and needs tiles of at least
    twice the halo so that a tile overlaps only its neighbours."""
    requested = tile_size or card.tile_size
    if requested < 1:
        raise ValueError(f"tile_size must be at least 1, not {requested}")
    values = card.time.steps * sum(len(s.bands) for s in card.inputs)
    fit = int((memory_mb * 2**20 / 4 / (values * _BYTES_PER_VALUE)) ** 0.5) - 4 * card.halo
    side = max(16, min(requested, fit))
    th, tw = (min(t, side) if fit < requested else t for t in aligned_tile(side, block))
    return max(th, 2 * card.halo), max(tw, 2 * card.halo)
