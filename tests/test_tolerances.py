"""The cross-machine tolerances accept float-level differences and nothing more."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tolerances import TIE_MARGIN, assert_same_classes, classification_metric_range


def test_a_class_may_flip_only_at_a_near_tie():
    probs = np.array([[0.5 + TIE_MARGIN / 4, 0.9], [0.5 - TIE_MARGIN / 4, 0.1]])  # (classes, pixels)
    expected = probs.argmax(0)
    assert_same_classes(np.array([1, 0]), expected, probs)  # pixel 0 is a near tie
    with pytest.raises(AssertionError, match="without a near tie"):
        assert_same_classes(np.array([0, 1]), expected, probs)


def test_metric_range_covers_exactly_the_near_tie_decisions():
    probs = np.array([[0.5 + TIE_MARGIN / 4, 0.5 - TIE_MARGIN / 4], [0.9, 0.1], [0.2, 0.8]])
    accuracy = lambda pred: float((pred == np.array([1, 0, 1])).mean())  # noqa: E731
    assert classification_metric_range(probs, accuracy) == (pytest.approx(2 / 3), pytest.approx(1.0))
    clear = np.array([[0.7, 0.3], [0.9, 0.1], [0.2, 0.8]])
    low, high = classification_metric_range(clear, accuracy)
    assert low == high == pytest.approx(2 / 3)
