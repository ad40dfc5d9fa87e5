"""Blend the predictions of overlapping tiles and hand out each pixel's sum once it is complete.

Tiles arrive row-major (:func:`.tiling.halo_tiles`). A tile overlaps only its neighbours, so
what is still open after a tile is the strip it shares with the next tile in its row and the
strip its row shares with the next row. Only those two strips are carried, so memory grows with
the halo and the raster width, never with the raster area: no whole-raster accumulation buffer.
"""

from __future__ import annotations

import numpy as np

from .tiling import HaloTile, Window


class OverlapBlend:
    """Weighted sums of ``values`` arrays (values, h, w) over a grid ``width`` pixels wide."""

    def __init__(self, values: int, width: int):
        self.values, self.width = values, width
        self._right: np.ndarray | None = None      # this row's sum over the next tile's left overlap
        self._below: np.ndarray | None = None      # the last row's sum over this row's top overlap
        self._below_rows = (0, 0)
        self._next_below: np.ndarray | None = None

    def add(self, tile: HaloTile, prediction: np.ndarray) -> tuple[Window, np.ndarray]:
        """Add ``prediction`` (values, keep height, keep width) with the tile's weights; returns the
        ``done`` window of the tile and its finished sums (values, done height, done width)."""
        (r0, r1), (c0, c1) = tile.rows.keep, tile.cols.keep
        acc = prediction * tile.weights
        if tile.j > 0 and self._right is not None:
            acc[:, :, :self._right.shape[2]] += self._right
        d1 = tile.cols.done[1]
        # Carried before the previous row is added: the strip holds this row's tiles only.
        self._right = acc[:, :, d1 - c0:].copy() if d1 < c1 else None
        if self._below is not None and tile.i > 0:
            b0, b1 = self._below_rows
            acc[:, b0 - r0:b1 - r0, :d1 - c0] += self._below[:, :, c0:d1]
        e1 = tile.rows.done[1]
        if e1 < r1:
            if tile.j == 0:
                self._next_below = np.zeros((self.values, r1 - e1, self.width), dtype=np.float32)
            self._next_below[:, :, c0:d1] = acc[:, e1 - r0:, :d1 - c0]
        if tile.cols.done[1] == self.width:  # the row is complete: its bottom strip moves down
            self._below, self._below_rows = self._next_below, (e1, r1)
            self._next_below = None
        return tile.window("done"), acc[:, :e1 - r0, :d1 - c0]
