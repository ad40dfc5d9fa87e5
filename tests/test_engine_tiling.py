"""Windows cover every pixel exactly once; tiles follow blocks; blend weights sum to one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eo_missing_qgis.core.tiling import aligned_tile, axis_weights, blend_weights, windows


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 120), st.integers(1, 120))
def test_windows_cover_every_pixel_exactly_once(height, width, th, tw):
    count = np.zeros((height, width), dtype=np.int32)
    for win in windows(height, width, (th, tw)):
        assert win.height > 0 and win.width > 0
        count[win.slices()] += 1
    assert (count == 1).all()


def test_empty_grid_has_no_windows():
    assert list(windows(0, 10, (4, 4))) == []


@given(st.integers(1, 2048), st.integers(1, 1024), st.integers(1, 20000))
def test_tiles_are_whole_blocks_or_bounded(requested, block_h, block_w):
    th, tw = aligned_tile(requested, (block_h, block_w))
    for t, b in ((th, block_h), (tw, block_w)):
        assert t % b == 0 or t == requested
        assert t <= max(2 * requested, b) + b


def test_strip_rasters_get_bounded_tiles():
    assert aligned_tile(512, (1, 10000)) == (512, 512)
    assert aligned_tile(256, (100, 100)) == (300, 300)
    assert aligned_tile(256, (256, 256)) == (256, 256)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(1, 64), st.integers(0, 40))
def test_axis_weights_sum_to_one(total, tile, halo):
    acc = np.zeros(total)
    for start, w in axis_weights(total, tile, halo):
        assert start >= 0 and start + len(w) <= total
        assert (w > 0).all()
        acc[start:start + len(w)] += w
    np.testing.assert_allclose(acc, 1.0, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 90), st.integers(1, 90), st.integers(4, 40), st.integers(4, 40), st.integers(0, 12))
def test_blend_weights_sum_to_one_in_2d(height, width, th, tw, halo):
    acc = np.zeros((height, width))
    for win, w in blend_weights(height, width, (th, tw), halo):
        assert w.shape == (win.height, win.width)
        acc[win.slices()] += w
    np.testing.assert_allclose(acc, 1.0, rtol=1e-5)


def test_halo_windows_overlap_and_ramp():
    spans = axis_weights(100, 40, 5)
    assert [s for s, _ in spans] == [0, 35, 75]
    first = spans[0][1]
    assert first[0] == 1.0 and first[-1] < 0.5  # flat at the grid edge, fading into the neighbour
