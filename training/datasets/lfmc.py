"""Live fuel moisture content (presto ``fuel_moisture``): regression in %, site-held-out test."""

from __future__ import annotations

from pathlib import Path

from .base import EODataset, TaskInfo
from .presto import load_presto

INFO = TaskInfo(
    task="regression", name="LFMC", title="Live fuel moisture content", unit="%", range=(30.0, 320.0)
)


def load(data_dir: str | Path) -> EODataset:
    """2313 western-US samples, 3 monthly steps; validation is grouped by site like the test."""
    return load_presto(Path(data_dir) / "presto" / "fuel_moisture", "lfmc", INFO)
