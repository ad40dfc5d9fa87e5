"""The three real datasets: physical units, splits, statistics and the crop-type taxonomy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import BallTree

from eo_missing_qgis.core.definitions import BAND_UNITS, BANDS
from eo_missing_qgis.core.preprocessing import standardize
from eo_missing_qgis.core.units import implausible_fraction
from training.datasets import algae, crop_type, load_dataset
from training.datasets.base import EARTH_RADIUS_M
from training.datasets.crop_type import CLASSES, ewoc_class
from training.run import split_data


@pytest.fixture(scope="module", params=["lfmc", "algae", "crop_type"])
def dataset(request, data_dir):
    return load_dataset(request.param, data_dir)


def test_every_band_is_in_its_physical_unit(dataset):
    expected = {"lfmc": (2313, 3), "algae": (1122, 12), "crop_type": (631, 12)}[dataset.name]
    for modality, bands in BANDS.items():
        values = dataset.physical[modality]
        assert values.shape == (*expected, len(bands))
        for c, unit in enumerate(BAND_UNITS[modality]):
            assert implausible_fraction(values[..., c], unit) < 0.01, (modality, bands[c])
    s2 = np.nanmedian(dataset.physical["S2"], axis=(0, 1))
    assert np.all((s2 > 0.01) & (s2 < 0.5))  # reflectance 0-1, not x10000
    assert -30 < np.nanmedian(dataset.physical["S1"][..., 0]) < 0  # VV in dB, not DN


def test_every_sample_has_its_months_and_location(dataset):
    n, steps = len(dataset.target), dataset.steps
    assert dataset.months.shape == (n, steps) and dataset.latlon.shape == (n, 2)
    assert dataset.months.min() >= 1 and dataset.months.max() <= 12
    # steps run forward in time: consecutive months for crop type; presto (LFMC, algae) steps are
    # about 30 days apart, so two may fall in one calendar month or skip one (month.npy)
    gaps = np.diff(dataset.months, axis=1) % 12
    assert set(np.unique(gaps)) <= ({1} if dataset.name == "crop_type" else {0, 1, 2})
    assert np.all(np.abs(dataset.latlon[:, 0]) <= 90) and np.all(np.abs(dataset.latlon[:, 1]) <= 180)
    if dataset.name == "crop_type":  # Flanders from November, East Africa from December
        flanders = dataset.meta["region"] == "flanders"
        assert set(dataset.months[flanders, 0]) == {11} and set(dataset.months[~flanders, 0]) == {12}
        assert np.all(dataset.latlon[flanders, 0] > 50)


def test_splits_are_disjoint_seeded_and_keep_the_test_fixed(dataset):
    a, b, c = dataset.splits(0), dataset.splits(0), dataset.splits(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(a["test"], c["test"]) and not np.array_equal(a["val"], c["val"])
    assert not set(a["train"]) & set(a["val"]) and not set(a["val"]) & set(a["test"])
    assert len(a["train"]) + len(a["val"]) + len(a["test"]) == len(dataset.target)
    for one, other in (("train", "val"), ("train", "test"), ("val", "test")):  # sites / locations
        assert not set(dataset.groups[a[one]]) & set(dataset.groups[a[other]]), (one, other)


#: The radius within which two samples count as one place (see each loader's docstring).
RADIUS_M = {"crop_type": crop_type.RADIUS_M, "algae": algae.RADIUS_M}


def _close_pairs(data, a: np.ndarray, b: np.ndarray) -> int:
    """How many samples of ``a`` lie within the dataset's radius of a sample of ``b``."""
    points = np.radians(data.latlon)
    tree = BallTree(points[b], metric="haversine")
    hits = tree.query_radius(points[a], r=RADIUS_M[data.name] / EARTH_RADIUS_M, count_only=True)
    return int((hits > 0).sum())


@pytest.mark.parametrize("name", ["crop_type", "algae"])
def test_no_near_duplicate_crosses_a_split(name, data_dir):
    data = load_dataset(name, data_dir)
    for seed in (0, 1):
        s = data.splits(seed)
        assert _close_pairs(data, s["test"], np.concatenate([s["train"], s["val"]])) == 0
        assert _close_pairs(data, s["val"], s["train"]) == 0


def test_random_split_switch_reproduces_the_crop_type_leak(data_dir):
    data = load_dataset("crop_type", data_dir)
    old, new = data.splits(0, kind="random"), data.splits(0)
    assert not np.array_equal(old["test"], new["test"]) and len(old["test"]) == len(new["test"])
    # same fields recorded twice end on both sides of the random split (the issue counts 23)
    assert _close_pairs(data, old["test"], old["train"]) >= 10
    assert split_data(data, 0, split="random").splits["test"].tolist() == old["test"].tolist()
    with pytest.raises(ValueError, match="unknown split"):
        data.splits(0, kind="by_luck")


def test_statistics_come_from_the_training_split_and_inputs_use_core_standardize(dataset):
    prep = split_data(dataset, seed=0)
    train = dataset.physical["S2"][prep.splits["train"]]
    assert np.allclose(prep.specs["S2"].mean, np.nanmean(train, axis=(0, 1)), rtol=1e-5)
    test_all = dataset.physical["S2"][prep.splits["test"]]
    x, _ = standardize(test_all, prep.specs["S2"])
    assert np.array_equal(prep.arrays["test"]["S2"], x)
    assert prep.arrays["train"]["S2"].dtype == np.float32


def test_crop_taxonomy_covers_both_regions(data_dir):
    data = load_dataset("crop_type", data_dir)
    flanders = data.target[data.meta["region"] == "flanders"]
    names = {CLASSES[k].name for k in np.unique(flanders)}
    assert {"maize", "grassland", "other crops"} <= names
    assert len({c.color for c in CLASSES}) == len(CLASSES) == data.info.n_outputs
    assert [c.id for c in CLASSES] == list(range(1, len(CLASSES) + 1))
    assert np.all(np.bincount(data.target[data.is_test], minlength=len(CLASSES)) > 0)
    assert ewoc_class(1101060000) == 0 and ewoc_class(1101070000) == 1 and ewoc_class(2001020000) == 2
    assert ewoc_class(1106000050) == 3 and ewoc_class(1107000040) == 4 and ewoc_class(4300000000) == 5
    assert ewoc_class(1600000000) == 6


def test_missing_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="shared data directory"):
        load_dataset("crop_type", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("bogus", tmp_path)
