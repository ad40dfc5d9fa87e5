"""The presto per-pixel arrays (S1 dB, S2 x10000, ERA5 K and m, SRTM m and degree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eo_missing_qgis.core.preprocessing import to_physical
from eo_missing_qgis.core.units import preset

from .base import EODataset, TaskInfo, location_groups

#: Channel indices of each modality in ``s1_s2_era5_srtm.npy`` (B8A, B9 and NDVI are not used:
#: the nine S2 bands are those every source, including the WorldCereal cube, has).
CHANNELS = {
    "S1": [0, 1],
    "S2": [2, 3, 4, 5, 6, 7, 8, 11, 12],
    "weather": [13, 14],
    "DEM": [15, 16],
}
ENCODINGS = {
    "S1": [preset("dB")] * 2,
    "S2": [preset("reflectance", "reflectance x 10000 (L2A DN)")] * 9,
    "weather": [preset("K"), preset("mm", "m (ERA5)")],
    "DEM": [preset("m"), preset("degree")],
}


def load_presto(
    folder: Path, name: str, info: TaskInfo, *, classes_from_one: bool = False, group_radius_m: float = 0.0
) -> EODataset:
    """One presto task folder (``<folder>/npy/*.npy``) as physical values; validation groups are
    the sites (``site.npy``) or, with ``group_radius_m``, location clusters of that radius."""
    npy = Path(folder) / "npy"
    if not npy.is_dir():
        raise FileNotFoundError(f"{npy} does not exist: pass the shared data directory (its presto/ folder)")
    raw = np.load(npy / "s1_s2_era5_srtm.npy")
    physical = {m: to_physical(raw[..., idx], ENCODINGS[m]) for m, idx in CHANNELS.items()}
    target = np.load(npy / "target.npy")
    target = (target.astype(np.int64) - 1) if classes_from_one else target.astype(np.float32)
    latlon = np.load(npy / "latlon.npy")
    if group_radius_m:
        groups = location_groups(latlon, group_radius_m)
    else:
        groups = np.load(npy / "site.npy", allow_pickle=True)
    return EODataset(
        name=name,
        physical=physical,
        target=target,
        is_test=np.load(npy / "is_test.npy").astype(bool),
        info=info,
        groups=groups,
        months=np.load(npy / "month.npy").astype(np.int64) + 1,  # stored 0-11
        latlon=np.asarray(latlon, np.float64),
    )
