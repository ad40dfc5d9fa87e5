"""Loaders of the real datasets, each taking the shared data directory."""

from __future__ import annotations

from pathlib import Path

from . import algae, crop_type, lfmc, regional
from .base import EODataset, TaskInfo

LOADERS = {
    "lfmc": lfmc.load,
    "algae": algae.load,
    "crop_type": crop_type.load,
    "crop_type_europe": regional.load_europe,
    "crop_type_east_africa": regional.load_east_africa,
    "cropland": regional.load_cropland,
}

__all__ = ["LOADERS", "EODataset", "TaskInfo", "load_dataset"]


def load_dataset(name: str, data_dir: str | Path) -> EODataset:
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name](data_dir)
