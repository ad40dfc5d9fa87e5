"""Regional WorldCereal datasets: crop type in Europe, crop type in East Africa, cropland.

The pooled ``crop_type`` dataset is 80 % East African, so its models paint sorghum and millet on
Belgium. Each region here has the classes its own data hold.

Legends. Two WorldCereal legends label these sources:

- ``ewoc_code`` (public East-Africa extractions, Flanders LPIS): the hierarchical 10-digit legend of
  WorldCereal/worldcereal-classification (``src/worldcereal/data/croptype_mappings/
  class_mappings.json``): first digit 1 cropland (11 temporary crops: 1101 cereals with 110101
  wheat, 110102 barley, 110103 rye, 110104 oats, 110105 triticale, 110106 maize, 110107 sorghum,
  110108 rice, 110112 millet; 1103 vegetables, 1105 legumes, 1106 oilseeds, 1107 root and tuber
  crops, 1108 fibre; 1111 temporary grasses; 12 permanent crops), 2 grassland and wetland,
  3 shrubland, 4 trees, 5 bare, 6 built-up, 7 water. 1000000000 (cropland, no crop given) and
  1600000000 carry no crop type in that file's mappings: left out of crop type, cropland for the
  cropland task (first digit 1).
- The legacy ``CT`` / ``LC`` codes (``old_training_patches`` rasters, prometheo ``CROPTYPE_LABEL`` /
  ``LANDCOVER_LABEL``), as listed in WorldCereal/ewoc_rdm_web ``src/utils/Legends.ts``: CT 1110
  winter wheat, 1200 maize, 1400 sorghum, 1500/1510 barley, 1800 millets, 1910 winter cereal,
  2000-2999 vegetables, 3000-3999 fruit, 5000-5999 roots and tubers (5100 potatoes), 7000-7999
  legumes, 8100 sugar beet, 9100-9120 grass and fodder, 9998 mixed cropping (left out); LC 10-12
  cropland, 13 grassland, 20-80 natural land, built-up, water, 99 no cropland, 0 no information.

Europe (``crop_type_europe``): Flanders LPIS + prometheo (Nov 2020 .. Oct 2021) and the three
Belgian ``old_training_patches`` locations (seasons 2018 and 2019, Nov .. Oct). No sorghum or
millet: the Belgian data hold none. East Africa (``crop_type_east_africa``): the public
extractions (Dec 2016 .. Nov 2017) and the Tanzania patch, whose CT raster uses the legacy legend
(maize, sorghum, vegetables; mixed cropping left out). Cropland (``cropland``): crop / other land
in Europe only. The East-African data hold 29 non-crop samples of 500 (23 of them trees, 3
herbaceous) and the Tanzania patch none, too few to learn or check "other land" there; a European
model's footprint then says plainly that East Africa is outside it. Crop follows WorldCereal's
cropland product: ewoc first digit 1, legacy LC 10-12; grassland (LC 13, ewoc 2) is other land.

Samples and splits. A parquet sample is one field; patch pixels of one parcel (a connected
component of one LC / CT value, :func:`.patches.parcels`) are not independent, so at most
:data:`PIXELS_PER_PARCEL` random interior pixels (:func:`.patches.interior`; boundary pixels mix
two parcels: with them a random forest on S2 scored 0.21 test macro-F1 on Europe, without them
0.58) are taken per parcel and ``groups`` are parcels (location
clusters of :data:`.crop_type.RADIUS_M` for the parquet samples): test (25 %, fixed) and
validation hold out whole parcels, never single pixels. Groups are parcels rather than whole
locations because three Belgian locations cannot give every class to train, validation and test;
``meta["location"]`` names each sample's location (patch id, or ``points``) for a
location-held-out check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eo_missing_qgis.core.definitions import MODALITIES
from eo_missing_qgis.core.preprocessing import to_physical

from .base import EODataset, TaskInfo, grouped_stratified_split, location_groups
from .crop_type import (
    ENCODINGS,
    RADIUS_M,
    STEPS,
    TEST_FRACTION,
    TEST_SEED,
    crop_classes,
    ewoc_class,
    flanders_series,
    wide_series,
)
from .patches import read_patch, sample_parcels

#: Pixels kept per parcel of the patches (a few dozen parcels hold ~10 000 labelled pixels).
PIXELS_PER_PARCEL = 25
#: Label of a sample no class takes (left out).
NONE = -1
TANZANIA = "2021_TZA_COPERNICUS-GEOGLAM_POLY_1101950"

EUROPE = TaskInfo("classification", "crop type (Europe)", "Crop type, Europe", crop_classes(
    "maize", "other cereals", "root crops and sugar beet", "grassland", "other crops", "non-crop"))
EAST_AFRICA = TaskInfo("classification", "crop type (East Africa)", "Crop type, East Africa", crop_classes(
    "maize", "sorghum and millet", "legumes and oilseeds", "other crops", "non-crop"))
CROPLAND = TaskInfo("classification", "cropland", "Cropland", crop_classes("cropland", "other land"))


def ewoc_europe(code: int) -> int:
    """Class index of :data:`EUROPE` for an ``ewoc_code``."""
    text = f"{int(code):010d}"
    if text in ("1000000000", "1600000000"):
        return NONE
    if text.startswith("110106"):
        return 0
    if text[:6] in ("110101", "110102", "110103", "110104", "110105"):
        return 1
    if text[:4] == "1107":
        return 2
    if text[0] == "2" or text[:4] == "1111":
        return 3
    return 4 if text[0] == "1" else 5


def legacy_europe(ct: int, lc: int) -> int:
    """Class index of :data:`EUROPE` for a legacy CT code (its LC when CT is 0)."""
    if ct == 0:  # no crop declared: grassland, natural land, built-up, water; unknown crops left out
        return 3 if lc == 13 else 5 if lc >= 20 else NONE
    if ct == 1200:
        return 0
    if 1100 <= ct < 2000 and ct not in (1300, 1400, 1800):
        return 1
    if 5000 <= ct < 6000 or ct == 8100:
        return 2
    if 9100 <= ct < 9200:
        return 3
    return NONE if ct == 9998 else 4


#: :data:`EAST_AFRICA` index of each class of the pooled ``crop_type`` taxonomy: its grassland
#: (ewoc 2) joins non-crop, its root and tuber crops (6 samples) join other crops.
_FROM_POOLED = (0, 1, 4, 2, 3, 4, 3)


def ewoc_east_africa(code: int) -> int:
    """Class index of :data:`EAST_AFRICA` for an ``ewoc_code``."""
    return _FROM_POOLED[ewoc_class(code)]


def legacy_east_africa(ct: int, lc: int) -> int:
    """Class index of :data:`EAST_AFRICA` for a legacy CT code (no class when CT is 0)."""
    if ct in (0, 9998):
        return NONE
    if ct == 1200:
        return 0
    if ct in (1400, 1800):
        return 1
    if 4000 <= ct < 5000 or 7000 <= ct < 8000:
        return 2
    return 3


def ewoc_cropland(code: int) -> int:
    """Class index of :data:`CROPLAND`: 0 crop (first digit 1), 1 other land."""
    return 0 if f"{int(code):010d}"[0] == "1" else 1


def legacy_cropland(ct: int, lc: int) -> int:
    """Class index of :data:`CROPLAND` for a legacy LC code (0: no information)."""
    if lc == 0:
        return NONE
    return 0 if lc in (10, 11, 12) else 1


@dataclass
class Part:
    """Samples of one source: physical values, labels (:data:`NONE` = left out), where, when."""

    physical: dict[str, np.ndarray]
    labels: np.ndarray
    latlon: np.ndarray
    months: np.ndarray
    location: np.ndarray
    parcel: np.ndarray | None = None  # patches only; fields of the parquets are grouped by place

    def labelled(self) -> Part:
        """The samples a class takes."""
        keep = self.labels != NONE
        parcel = None if self.parcel is None else self.parcel[keep]
        return Part({m: v[keep] for m, v in self.physical.items()}, self.labels[keep], self.latlon[keep],
                    self.months[keep], self.location[keep], parcel)


def _months(first: int, n: int) -> np.ndarray:
    return np.repeat(((first - 1 + np.arange(STEPS)) % 12 + 1)[None], n, axis=0)


def _points(stored: dict[str, np.ndarray], labels, latlon, first_month: int) -> Part:
    labels = np.asarray(labels, np.int64)
    return Part({m: to_physical(stored[m], ENCODINGS[m]) for m in MODALITIES}, labels,
                np.asarray(latlon, np.float64), _months(first_month, len(labels)),
                np.full(len(labels), "points"))


def flanders(folder: Path, ewoc, legacy) -> list[Part]:
    """Flanders LPIS (``ewoc_code``) and prometheo (legacy codes), Nov 2020 .. Oct 2021."""
    stored, codes, latlon = flanders_series(
        pd.read_parquet(folder / "private_extractions_dummy_2021_BEL_LPIS-Flanders.parquet"))
    prometheo = pd.read_parquet(folder / "prometheo_worldcereal_dataset_monthly.parquet")
    prometheo_labels = [legacy(int(ct), int(lc)) for ct, lc in
                        zip(prometheo["CROPTYPE_LABEL"], prometheo["LANDCOVER_LABEL"], strict=True)]
    return [
        _points(stored, [ewoc(c) for c in codes], latlon, 11),
        _points(wide_series(prometheo, 3), prometheo_labels, prometheo[["lat", "lon"]], 11),  # from 2020-08
    ]


def public_east_africa(folder: Path, ewoc) -> Part:
    """The public extractions (``ewoc_code``), Dec 2016 .. Nov 2017."""
    public = pd.read_parquet(folder / "test_public_extractions.parquet")
    return _points(wide_series(public, 0), [ewoc(c) for c in public["ewoc_code"]], public[["lat", "lon"]], 12)


def patch_parts(folder: Path, legacy, tanzania: bool) -> list[Part]:
    """Capped pixels of each parcel of the Belgian patches (or of the Tanzania patch)."""
    out = []
    for location in sorted(p for p in (folder / "old_training_patches").iterdir() if p.is_dir()):
        if (location.name == TANZANIA) != tanzania:
            continue
        patch = read_patch(location)
        labels = np.array([legacy(int(c), int(lc)) for c, lc in zip(patch.ct, patch.lc, strict=True)])
        keep = sample_parcels(patch.parcel, (labels != NONE) & patch.interior, PIXELS_PER_PARCEL, 0)
        out.append(Part({m: v[keep] for m, v in patch.physical.items()}, labels[keep], patch.latlon[keep],
                        patch.months[keep], np.full(len(keep), patch.location), patch.parcel[keep]))
    return out


def assemble(name: str, info: TaskInfo, region: str, parts: list[Part]) -> EODataset:
    """One dataset from ``parts``: unlabelled samples left out, groups = parcels (patches) or
    location clusters (fields of the parquets), a fixed grouped stratified test split."""
    parts = [p.labelled() for p in parts]
    latlon = np.concatenate([p.latlon for p in parts])
    location = np.concatenate([p.location for p in parts])
    points = np.concatenate([np.full(len(p.labels), p.parcel is None) for p in parts])
    cluster = np.zeros(len(latlon), np.int64)
    if points.any():
        cluster[points] = location_groups(latlon[points], RADIUS_M)
    if not points.all():
        cluster[~points] = np.concatenate([p.parcel for p in parts if p.parcel is not None])
    keys = np.char.add(np.char.add(location.astype(str), "/"), cluster.astype(str))
    groups = np.unique(keys, return_inverse=True)[1]
    labels = np.concatenate([p.labels for p in parts])
    _, test = grouped_stratified_split(labels, groups, TEST_FRACTION, TEST_SEED)
    return EODataset(
        name=name,
        physical={m: np.concatenate([p.physical[m] for p in parts]).astype(np.float32) for m in MODALITIES},
        target=labels,
        is_test=np.isin(np.arange(len(labels)), test),
        info=info,
        groups=groups,
        months=np.concatenate([p.months for p in parts]),
        latlon=latlon,
        meta={"region": np.full(len(labels), region), "location": location, "parcel": keys},
    )


def _folder(data_dir: str | Path) -> Path:
    folder = Path(data_dir) / "worldcereal"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: pass the shared data directory")
    return folder


def load_europe(data_dir: str | Path) -> EODataset:
    folder = _folder(data_dir)
    parts = flanders(folder, ewoc_europe, legacy_europe) + patch_parts(folder, legacy_europe, tanzania=False)
    return assemble("crop_type_europe", EUROPE, "europe", parts)


def load_east_africa(data_dir: str | Path) -> EODataset:
    folder = _folder(data_dir)
    parts = [public_east_africa(folder, ewoc_east_africa),
             *patch_parts(folder, legacy_east_africa, tanzania=True)]
    return assemble("crop_type_east_africa", EAST_AFRICA, "east_africa", parts)


def load_cropland(data_dir: str | Path) -> EODataset:
    folder = _folder(data_dir)
    parts = flanders(folder, ewoc_cropland, legacy_cropland)
    parts += patch_parts(folder, legacy_cropland, tanzania=False)
    return assemble("cropland", CROPLAND, "europe", parts)
