"""Algae bloom severity (presto ``algae_blooms``): five ordered classes, upstream test split.

The upstream test samples lie 65 km or more from every training sample, while most places were
sampled several times (1122 samples at 255 places), so a random validation split shares places
with training. Validation holds out whole location clusters (single linkage at ``RADIUS_M``):
every validation sample is then at least 20 km from every training sample. 20 km is the largest
radius at which no cluster outgrows one validation fold (about 155 training-pool samples; 30 km
chains 211 samples into one cluster, 64 km 306).
"""

from __future__ import annotations

from pathlib import Path

from eo_missing_qgis.core.card import ClassInfo

from .base import EODataset, TaskInfo
from .presto import load_presto

RADIUS_M = 20_000.0
COLORS = ("#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c")
INFO = TaskInfo(
    task="classification",
    name="algae bloom severity",
    title="Algae bloom severity",
    classes=tuple(ClassInfo(k + 1, f"severity {k + 1}", c) for k, c in enumerate(COLORS)),
)


def load(data_dir: str | Path) -> EODataset:
    """1122 US water-body samples, 12 monthly steps; severity 1-5 becomes class index 0-4."""
    return load_presto(
        Path(data_dir) / "presto" / "algae_blooms",
        "algae",
        INFO,
        classes_from_one=True,
        group_radius_m=RADIUS_M,
    )
