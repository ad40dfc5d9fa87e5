"""A dataset held in memory as physical values per modality, with its splits and card pieces.

Every loader decodes its source's stored encoding with :func:`eo_missing_qgis.core.preprocessing.
to_physical`; the network input is then built with :func:`~eo_missing_qgis.core.preprocessing.
standardize` from statistics of the training split, exactly as QGIS inference does.

Missing values (S2 cloud gaps, S1 nodata) are kept as NaN in the physical arrays and the samples
are *kept*: ``standardize`` fills them with the band mean (0 after scaling). Dropping them would
discard most crop-type samples (up to 46 % of the Flanders S2 months are cloudy). Inference does
the same with the same function: a pixel missing a band in some months is filled and predicted
(the real WorldCereal cube lacks S2 in two months); only a pixel whose band is missing in every
month is written as nodata (:func:`~eo_missing_qgis.core.preprocessing.valid_pixels`).
Physically impossible values (reflectance outside 0..1, backscatter outside -50..20 dB) are
missing too (:func:`~eo_missing_qgis.core.preprocessing.mask_implausible`), in training and QGIS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit
from sklearn.neighbors import BallTree

from eo_missing_qgis.core.card import Band, ClassInfo, InputSpec
from eo_missing_qgis.core.definitions import BAND_UNITS, BANDS, MODALITIES, SENSORS, Task
from eo_missing_qgis.core.preprocessing import band_statistics, mask_implausible, standardize

from .modalities import check_modalities

EARTH_RADIUS_M = 6_371_000.0
#: Split kinds: ``grouped`` keeps every group (LFMC site, location cluster) on one side of the
#: test and validation splits; ``random`` reproduces the sample-random splits of earlier versions
#: (crop-type test, crop-type and algae validation), which leak co-located duplicates, kept only
#: to report the leak's effect. LFMC is split by site in both.
SPLITS = ("grouped", "random")


@dataclass(frozen=True)
class TaskInfo:
    """What the model predicts, in the terms of the model card's output."""

    task: str
    name: str
    title: str
    classes: tuple[ClassInfo, ...] = ()
    unit: str = ""
    range: tuple[float, float] | None = None

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == Task.CLASSIFICATION else 1


@dataclass
class EODataset:
    """Physical values (N, T, bands) per modality (NaN = missing), targets and the test flag.

    Classification targets are class *indices* 0..K-1 into ``info.classes``; regression targets
    are physical values. ``groups`` (LFMC sites, or location clusters of co-located samples) keeps
    a group on one side of the validation split, like the test split does; ``random_test`` is the
    sample-random test split of earlier versions (crop type), used only by ``split="random"``.
    ``months`` (N, T) is the calendar month (1-12) of each step and ``latlon`` (N, 2) each sample's
    latitude and longitude in degrees: the context a pixel in QGIS has too (its dates, its CRS).
    """

    name: str
    physical: dict[str, np.ndarray]
    target: np.ndarray
    is_test: np.ndarray
    info: TaskInfo
    groups: np.ndarray | None = None
    random_test: np.ndarray | None = None
    months: np.ndarray | None = None
    latlon: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.target)
        for mod in MODALITIES:
            arr = self.physical[mod]
            if arr.shape[0] != n or arr.shape[2] != len(BANDS[mod]):
                raise ValueError(
                    f"{self.name}: {mod} has shape {arr.shape}, expected ({n}, T, {len(BANDS[mod])})"
                )
            # Impossible values are missing, here as in QGIS (standardize masks them too), so they
            # neither inflate the card's statistics nor reach the network.
            self.physical[mod] = mask_implausible(arr, BAND_UNITS[mod])

    @property
    def steps(self) -> int:
        return self.physical["S2"].shape[1]

    def splits(self, seed: int, val_fraction: float = 0.2, kind: str = "grouped") -> dict[str, np.ndarray]:
        """Train / validation (carved from the training part, seeded) / test indices."""
        if kind not in SPLITS:
            raise ValueError(f"unknown split {kind!r}; choose one of {', '.join(SPLITS)}")
        grouped = kind == "grouped" or self.info.task == Task.REGRESSION  # LFMC: always by site
        is_test = self.is_test if grouped or self.random_test is None else self.random_test
        pool = np.flatnonzero(~is_test)
        groups = self.groups if grouped else None
        if groups is not None and self.info.task == Task.CLASSIFICATION:
            tr, va = grouped_stratified_split(self.target[pool], groups[pool], val_fraction, seed)
        elif groups is not None:
            splitter = GroupShuffleSplit(1, test_size=val_fraction, random_state=seed)
            tr, va = next(splitter.split(pool, groups=groups[pool]))
        elif self.info.task == Task.CLASSIFICATION:
            splitter = StratifiedShuffleSplit(1, test_size=val_fraction, random_state=seed)
            tr, va = next(splitter.split(pool, _stratifiable(self.target[pool])))
        else:
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(pool))
            cut = round(len(pool) * val_fraction)
            va, tr = order[:cut], order[cut:]
        return {"train": np.sort(pool[tr]), "val": np.sort(pool[va]), "test": np.flatnonzero(is_test)}

    def input_specs(self, train_idx: np.ndarray, modalities=MODALITIES) -> dict[str, InputSpec]:
        """Card inputs with standardisation statistics of the training samples only."""
        return {
            m: input_spec(m, *band_statistics(self.physical[m][train_idx]))
            for m in check_modalities(modalities)
        }

    def arrays(self, idx: np.ndarray, specs: dict[str, InputSpec]) -> dict[str, np.ndarray]:
        """Network inputs (standardised, missing values filled) and the target for ``idx``."""
        out = {m: standardize(self.physical[m][idx], spec)[0] for m, spec in specs.items()}
        out["y"] = self.target[idx]
        return out


def input_spec(modality: str, mean, std) -> InputSpec:
    """The card input of one modality group; the tensor is named after the modality."""
    return InputSpec(
        tensor=modality.lower(),
        modality=modality,
        sensor=SENSORS[modality],
        bands=tuple(Band(b, u) for b, u in zip(BANDS[modality], BAND_UNITS[modality], strict=True)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )


def location_groups(latlon: np.ndarray, radius_m: float) -> np.ndarray:
    """Cluster ids that chain samples closer than ``radius_m`` (single linkage on great-circle
    distance), so co-located duplicates and their neighbours share one group."""
    points = np.radians(np.asarray(latlon, np.float64))
    near = BallTree(points, metric="haversine").query_radius(points, r=radius_m / EARTH_RADIUS_M)
    rows = np.repeat(np.arange(len(points)), [len(n) for n in near])
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, np.concatenate(near))), shape=(len(points),) * 2)
    return connected_components(graph, directed=False)[1]


def grouped_stratified_split(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) positions: whole groups held out, classes about as frequent on each side.

    Fold ``seed mod k`` of a :class:`~sklearn.model_selection.StratifiedGroupKFold` with
    ``k = 1 / fraction`` folds: its greedy assignment barely depends on the shuffle seed, so
    successive seeds take successive folds (seeds 0..k-1 hold out every group once).
    """
    k = max(2, round(1 / fraction))
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(labels, _stratifiable(labels), groups))[seed % k]


def _stratifiable(labels: np.ndarray) -> np.ndarray:
    """Labels with singleton classes merged, since a stratified split needs two of each."""
    values, counts = np.unique(labels, return_counts=True)
    rare = values[counts < 2]
    out = labels.copy()
    if len(rare):
        out[np.isin(out, rare)] = -1
    return out
