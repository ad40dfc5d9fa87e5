"""How closely floats computed from data must agree when they cross machines.

CI runs on whatever CPU it gets. Summation order (SIMD width, thread count, ONNX Runtime's GEMM
kernels, batch size) changes the last digits of every float computed from data, so a test that
compares such floats exactly passes only on the machine that produced the reference. These are
the tolerances the suite uses instead, each with the reason it is safe and still strict.
"""

from __future__ import annotations

import itertools

import numpy as np

#: Card statistics (per-band mean/std) recomputed from the same data on another CPU: float64
#: sums over ~10^4 float32 values agree to ~1e-7 relative; a wrong split or unit is off by >1e-2.
STATS_RTOL = 1e-5

#: Two float32 runs of one network on different CPUs or batch sizes differ by ~1e-6 in a
#: probability. A predicted class may legitimately differ only where the top two probabilities
#: are closer than this; anywhere else a different class is a real regression.
TIE_MARGIN = 1e-4

#: Regression outputs through ONNX Runtime vs the card's metric: float32 noise is ~1e-6 relative
#: on each prediction, so RMSE/R² move by far less than 1e-4; a changed model moves them by >1e-2.
REGRESSION_METRIC_RTOL = 1e-4

#: One model's outputs under two ONNX Runtime versions on one CPU (other kernels, same float32
#: graph) differ by ~1e-6 relative to the output scale; a misread graph or weights by >1e-2.
RUNTIME_RTOL = 1e-4

#: Latitude/longitude of a pixel centre from two PROJ builds (rasterio's wheel, QGIS's osr)
#: agree to ~1e-9 degree, and the engine's interpolation between PROJ nodes errs by at most 1e-7
#: (``raster_io.LATLON_MAX_ERROR``); a wrong CRS, axis order or half-pixel offset (5 m ~ 4.5e-5
#: degree) fails.
LATLON_ATOL_DEG = 1e-6

#: A context value after the float32 network input: one float32 rounding (2^-23 relative; a
#: latitude of 50.6 degrees to 3.8e-6 degree), float32 sums over 24 terms a few more.
FLOAT32_INPUT_RTOL = 1e-6

#: At most this many near-tie samples are enumerated when bounding a classification metric.
_MAX_TIES = 12


def top2_margin(probs: np.ndarray, axis: int) -> np.ndarray:
    """Difference between the largest and second-largest value along ``axis``."""
    top = np.sort(probs, axis=axis)
    return np.take(top, -1, axis=axis) - np.take(top, -2, axis=axis)


def assert_same_classes(got: np.ndarray, expected: np.ndarray, probs: np.ndarray, axis: int = 0) -> None:
    """``got`` equals ``expected`` except where ``probs`` (the reference's class probabilities,
    classes along ``axis``) has a near tie between its top two classes."""
    differ = got != expected
    ties = top2_margin(probs, axis) < TIE_MARGIN
    assert not (differ & ~ties).any(), (
        f"{int((differ & ~ties).sum())} pixel(s) changed class without a near tie "
        f"(and {int((differ & ties).sum())} near-tie flip(s))"
    )


def classification_metric_range(probs: np.ndarray, metric) -> tuple[float, float]:
    """(lowest, highest) value of ``metric(predicted_index)`` over every way the samples whose top
    two probabilities are within :data:`TIE_MARGIN` could have been decided on another CPU."""
    pred = probs.argmax(1)
    ties = np.flatnonzero(top2_margin(probs, 1) < TIE_MARGIN)
    assert len(ties) <= _MAX_TIES, f"{len(ties)} near ties: the model output is degenerate"
    second = np.argsort(probs, axis=1)[:, -2]
    values = []
    for flips in itertools.product((False, True), repeat=len(ties)):
        p = pred.copy()
        p[ties[list(flips)]] = second[ties[list(flips)]]
        values.append(metric(p))
    return min(values), max(values)
