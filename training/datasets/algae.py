"""Algae bloom severity (presto ``algae_blooms``): five ordered classes, upstream split."""

from __future__ import annotations

from pathlib import Path

from eo_missing_qgis.core.card import ClassInfo

from .base import EODataset, TaskInfo
from .presto import load_presto

COLORS = ("#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c")
INFO = TaskInfo(
    task="classification",
    name="algae bloom severity",
    title="Algae bloom severity",
    classes=tuple(ClassInfo(k + 1, f"severity {k + 1}", c) for k, c in enumerate(COLORS)),
)


def load(data_dir: str | Path) -> EODataset:
    """1122 US water-body samples, 12 monthly steps; severity 1-5 becomes class index 0-4."""
    return load_presto(Path(data_dir) / "presto" / "algae_blooms", "algae", INFO, classes_from_one=True)
