"""Crop type from the WorldCereal parquets (East Africa, Flanders LPIS, prometheo Flanders).

Taxonomy (documented here, ids 1..7 are the raster values of the exported maps). Labels come in
two legends: the hierarchical ``ewoc_code`` (public East Africa extractions and Flanders LPIS)
and the older numeric ``CROPTYPE_LABEL`` (prometheo). Classes with fewer than ~10 samples are
grouped so every class has samples on both sides of the held-out split:

====  ====================  ====================================================================
id    class                 members
====  ====================  ====================================================================
1     maize                 ewoc 1101060000; prometheo 1200
2     sorghum and millet    ewoc 1101070000, 1101120000
3     grassland             ewoc 2xxxxxxxxx (managed grassland, herbaceous); prometheo 9120
4     legumes and oilseeds  ewoc 1105*, 1106* (beans, cowpeas, groundnuts, sunflower, sesame)
5     root and tuber crops  ewoc 1107* (cassava, potatoes, sweet potatoes, beet); prometheo 5100
6     trees and non-crop    ewoc 3*, 4*, 6*, 7* (shrubs, trees, built-up, water)
7     other crops           every other crop code (cereals other than maize/sorghum/millet,
                            cotton, vegetables, permanent and unspecified temporary crops)
====  ====================  ====================================================================

Prometheo samples with ``CROPTYPE_LABEL`` 0 carry no crop type (their land-cover label is mostly
"unknown") and are left out, leaving 631 of the 650 samples. Flanders contributes maize,
grassland, root crops, non-crop and other crops, so the exported models are meaningful on the
Belgian demo cube. Time: 12 consecutive months; East Africa 2016-12..2017-11, Flanders Nov 2020 ..
Oct 2021 (the months of ``worldcereal_preprocessed_inputs.nc``).

Splits are by location cluster: samples closer than ``RADIUS_M`` (single linkage) form one group,
and the test (25 %, fixed seed, the same for every training seed) and validation splits hold out
whole groups, stratified by class as far as groups allow. The East-African source records some
fields twice (two surveys): 98 samples have a twin at 0 m, and every pair of samples closer than
30 m (the closest are 0, 1.1, 6.8, 9.9, 20.6 and 21 m apart) has the same class, while the next
pairs (39 m and more) are distinct fields (their classes agree 69 % of the time, 30 % by chance).
30 m, 1.5 pixels of the 20 m S2 bands, thus puts every duplicate field in one group. The earlier
sample-random test split is kept as ``random_test`` to report the leak's effect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from eo_missing_qgis.core.card import ClassInfo
from eo_missing_qgis.core.definitions import BANDS, MODALITIES
from eo_missing_qgis.core.preprocessing import to_physical
from eo_missing_qgis.core.units import preset

from .base import EODataset, TaskInfo, grouped_stratified_split, location_groups

STEPS = 12
TEST_FRACTION = 0.25
TEST_SEED = 0
RADIUS_M = 30.0
#: Map colour of each crop class name, one for every task that has the class (same crop, same
#: colour in the mixed, European, East-African and cropland legends).
CROP_COLORS = {
    "maize": "#f1c232",
    "sorghum and millet": "#b45f06",
    "other cereals": "#e69138",
    "cropland": "#e69138",
    "grassland": "#6aa84f",
    "other land": "#6aa84f",
    "legumes and oilseeds": "#8e7cc3",
    "root and tuber crops": "#cc0000",
    "root crops and sugar beet": "#cc0000",
    "trees and non-crop": "#274e13",
    "non-crop": "#274e13",
    "other crops": "#a4c2f4",
}


def crop_classes(*names: str) -> tuple[ClassInfo, ...]:
    """Legend of ``names`` in order (ids from 1), coloured from :data:`CROP_COLORS`."""
    return tuple(ClassInfo(k, name, CROP_COLORS[name]) for k, name in enumerate(names, start=1))


CLASSES = crop_classes("maize", "sorghum and millet", "grassland", "legumes and oilseeds",
                       "root and tuber crops", "trees and non-crop", "other crops")
INFO = TaskInfo(task="classification", name="crop type", title="Crop type", classes=CLASSES)
ENCODINGS = {
    "S1": [preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")] * 2,
    "S2": [preset("reflectance", "reflectance x 10000 (L2A DN)")] * 9,
    "weather": [preset("K", "K x 100 (AgERA5)"), preset("mm", "mm x 100 (AgERA5)")],
    "DEM": [preset("m"), preset("degree")],
}
_PROMETHEO = {1200: 0, 9120: 2, 5100: 4}


def ewoc_class(code: int) -> int:
    """Class index (0-based) of a WorldCereal ``ewoc_code``."""
    text = f"{int(code):010d}"
    if text.startswith("110106"):
        return 0
    if text[:6] in ("110107", "110112"):
        return 1
    if text[0] == "2":
        return 2
    if text[:4] in ("1105", "1106"):
        return 3
    if text[:4] == "1107":
        return 4
    if text[0] in "3467":
        return 5
    return 6


def wide_series(df: pd.DataFrame, first_step: int) -> dict[str, np.ndarray]:
    """Stored values (N, 12, bands) from the wide ``OPTICAL-/SAR-/METEO-/DEM-`` layout."""
    steps = range(first_step, first_step + STEPS)

    def series(prefix: str) -> np.ndarray:
        cols = [next(c for c in df.columns if c.startswith(f"{prefix}-ts{t}-")) for t in steps]
        return df[cols].to_numpy(np.float64)

    static = {
        b: np.repeat(df[c].to_numpy(np.float64)[:, None], STEPS, axis=1)
        for b, c in (("elevation", "DEM-alt-20m"), ("slope", "DEM-slo-20m"))
    }
    return {
        "S1": np.stack([series(f"SAR-{b}") for b in BANDS["S1"]], -1),
        "S2": np.stack([series(f"OPTICAL-{b}") for b in BANDS["S2"]], -1),
        "weather": np.stack([series("METEO-temperature_mean"), series("METEO-precipitation_flux")], -1),
        "DEM": np.stack([static["elevation"], static["slope"]], -1),
    }


def flanders_series(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The Flanders LPIS long layout, Nov 2020 .. Oct 2021, one row per sample and month."""
    months = pd.date_range("2020-11-01", periods=STEPS, freq="MS")
    df = df[df["timestamp"].isin(months)].sort_values(["sample_id", "timestamp"])
    n = df["sample_id"].nunique()
    columns = {
        "S1": [f"S1-SIGMA0-{b}" for b in BANDS["S1"]],
        "S2": [f"S2-L2A-{b}" for b in BANDS["S2"]],
        "weather": ["AGERA5-TMEAN", "AGERA5-PRECIP"],
        "DEM": ["elevation", "slope"],
    }
    stored = {m: df[c].to_numpy(np.float64).reshape(n, STEPS, len(c)) for m, c in columns.items()}
    first = df.groupby("sample_id", sort=True)[["ewoc_code", "lat", "lon"]].first()
    return stored, first["ewoc_code"].to_numpy(), first[["lat", "lon"]].to_numpy(np.float64)


def load(data_dir: str | Path) -> EODataset:
    folder = Path(data_dir) / "worldcereal"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: pass the shared data directory")
    public = pd.read_parquet(folder / "test_public_extractions.parquet")
    flanders, flanders_codes, flanders_latlon = flanders_series(
        pd.read_parquet(folder / "private_extractions_dummy_2021_BEL_LPIS-Flanders.parquet")
    )
    prometheo = pd.read_parquet(folder / "prometheo_worldcereal_dataset_monthly.parquet")
    prometheo = prometheo[prometheo["CROPTYPE_LABEL"] != 0]
    parts = [wide_series(public, 0), flanders, wide_series(prometheo, 3)]  # prometheo starts 2020-08
    labels = np.concatenate(
        [
            [ewoc_class(c) for c in public["ewoc_code"]],
            [ewoc_class(c) for c in flanders_codes],
            [_PROMETHEO.get(int(c), 6) for c in prometheo["CROPTYPE_LABEL"]],
        ]
    ).astype(np.int64)
    region = np.array(["east_africa"] * len(public) + ["flanders"] * (len(labels) - len(public)))
    physical = {m: to_physical(np.concatenate([p[m] for p in parts]), ENCODINGS[m]) for m in MODALITIES}
    latlon = np.concatenate([public[["lat", "lon"]], flanders_latlon, prometheo[["lat", "lon"]]]).astype(
        float
    )
    groups = location_groups(latlon, RADIUS_M)
    _, test = grouped_stratified_split(labels, groups, TEST_FRACTION, TEST_SEED)
    _, random_test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=TEST_SEED, stratify=labels
    )
    is_test = np.isin(np.arange(len(labels)), test)
    first_month = np.where(region == "east_africa", 12, 11)  # Dec 2016 / Nov 2020
    months = (first_month[:, None] - 1 + np.arange(STEPS)) % 12 + 1
    return EODataset(
        name="crop_type",
        physical=physical,
        target=labels,
        is_test=is_test,
        info=INFO,
        groups=groups,
        random_test=np.isin(np.arange(len(labels)), random_test),
        months=months,
        latlon=latlon,
        meta={"region": region},
    )
