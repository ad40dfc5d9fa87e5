"""Regional WorldCereal datasets (Europe, East Africa, cropland) and the masking of impossible values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.definitions import BANDS
from eo_missing_qgis.core.preprocessing import mask_implausible, standardize, to_physical
from eo_missing_qgis.core.raster_inputs import encoding_for
from eo_missing_qgis.core.units import BOA_OFFSET_PRESET, preset
from training.datasets import load_dataset
from training.datasets.base import input_spec
from training.datasets.patches import read_patch
from training.datasets.regional import PIXELS_PER_PARCEL

from .engine_data import read_variable
from .test_training_cli import CONFIGS, run_cli

REGIONAL = ("crop_type_europe", "crop_type_east_africa", "cropland")
LOST_10M = "000028085BF08E7E"  # the Belgian location without S2_L2A_10m


@pytest.fixture(scope="module")
def datasets(data_dir):
    return {name: load_dataset(name, data_dir) for name in REGIONAL}


def class_names(data) -> set[str]:
    return {c.name for c in data.info.classes}


def test_each_region_has_its_own_classes(datasets):
    europe, africa = datasets["crop_type_europe"], datasets["crop_type_east_africa"]
    assert not any("sorghum" in n or "millet" in n for n in class_names(europe))
    assert "sorghum and millet" in class_names(africa)
    assert class_names(datasets["cropland"]) == {"cropland", "other land"}
    for data in datasets.values():  # every class has training and test samples
        splits = data.splits(0)
        for part in ("train", "test"):
            assert set(np.unique(data.target[splits[part]])) == set(range(len(data.info.classes)))


def test_samples_lie_in_their_region_with_their_months(datasets):
    europe = datasets["crop_type_europe"]
    lat, lon = europe.latlon.T
    assert (lat > 50.5).all() and (lat < 51.6).all() and (lon > 2.5).all() and (lon < 6).all()
    assert set(europe.meta["location"]) == {"points", LOST_10M, "00002806639B424A", "0000280849BAC91C"}
    assert (europe.months[:, 0] == 11).all() and (europe.months[:, -1] == 10).all()
    africa = datasets["crop_type_east_africa"]
    assert (np.abs(africa.latlon[:, 0]) < 15).all() and (africa.latlon[:, 1] > 25).all()
    assert ((africa.months >= 1) & (africa.months <= 12)).all()


@pytest.mark.parametrize("name", REGIONAL)
def test_no_group_or_parcel_crosses_train_val_test(datasets, name):
    data = datasets[name]
    parcel = data.meta["parcel"]
    for seed in (0, 1):
        splits = data.splits(seed)
        parts = list(splits.values())
        assert sum(len(p) for p in parts) == len(data.target)
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                assert not set(data.groups[a]) & set(data.groups[b])
                assert not set(parcel[a]) & set(parcel[b])  # a parcel's pixels stay together
    patch = data.meta["location"] != "points"
    _, counts = np.unique(parcel[patch], return_counts=True)
    assert counts.max() <= PIXELS_PER_PARCEL and len(counts) >= 5  # Tanzania: 5 parcels


def test_patch_without_10m_keeps_those_bands_missing(data_dir):
    patch = read_patch(data_dir / "worldcereal" / "old_training_patches" / LOST_10M)
    s2 = patch.physical["S2"]
    ten = [BANDS["S2"].index(b) for b in ("B02", "B03", "B04", "B08")]
    twenty = [c for c in range(len(BANDS["S2"])) if c not in ten]
    assert np.isnan(s2[:, :, ten]).all()
    assert np.isfinite(s2[:, :, twenty]).mean() > 0.9
    assert patch.parcel.max() > 10
    grid, inner = patch.parcel.reshape(64, 64), patch.interior.reshape(64, 64)
    assert 0.3 < inner.mean() < 0.95  # boundary pixels (mixed parcels) are not sampled
    for r, c in zip(*np.nonzero(inner), strict=True):
        assert (grid[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] == grid[r, c]).all()
    for p in np.unique(patch.parcel):  # a parcel holds one land cover and one crop type
        assert len(set(patch.ct[patch.parcel == p])) == len(set(patch.lc[patch.parcel == p])) == 1


def test_cube_s1_is_as_the_european_training_s1(datasets, data_dir):
    """Issue 14: the S1 crop-type model disagrees with S2 on the demo cube, but not because the
    cube's backscatter differs from the training data's. Decoded with the encoding the engine
    infers (WorldCereal DN) and standardised with the training statistics, the cube has the
    training's mean and spread overall and in every month (a wrong decode, e.g. 10 log10 DN or
    linear power, moves the mean by 10 to 40 std; an orbit or compositing change by > 1 std)."""
    europe = datasets["crop_type_europe"]
    train = europe.splits(0)["train"]
    spec = europe.input_specs(train, ["S1"])["S1"]
    names = [f"S1-SIGMA0-{b}" for b in BANDS["S1"]]
    stored = np.stack([read_variable(data_dir, n)[0] for n in names], axis=-1)  # (time, rows, cols, bands)
    encodings = [encoding_for(None, "dB", str(stored.dtype), n, n) for n in names]
    pixels = stored.reshape(stored.shape[0], -1, len(names)).swapaxes(0, 1)  # (pixels, time, bands)
    cube, valid = standardize(to_physical(pixels, encodings), spec)
    seen, _ = standardize(europe.physical["S1"][train], spec)
    assert valid.all()
    assert (np.abs(cube.mean(axis=(0, 1))) < 0.25).all()  # -0.02, 0.09
    assert ((cube.std(axis=(0, 1)) > 0.8) & (cube.std(axis=(0, 1)) < 1.25)).all()  # 0.95, 1.07
    assert (np.abs(cube.mean(axis=0) - seen.mean(axis=0)) < 0.75).all()  # at most 0.54 (VH, July)


def test_impossible_values_become_missing():
    physical = np.array([[[0.2, 1.7, -12.0], [-0.3, 0.5, -75.0]]], np.float32)  # (1, 2 steps, 3 bands)
    masked = mask_implausible(physical, ["reflectance", "reflectance", "dB"])
    assert np.isnan(masked[0, :, 0]).tolist() == [False, True]
    assert np.isnan(masked[0, :, 1]).tolist() == [True, False]
    assert np.isnan(masked[0, :, 2]).tolist() == [False, True]
    assert physical[0, 0, 1] == np.float32(1.7)  # the caller's array is untouched
    clean = physical[:, :1, :1]
    assert mask_implausible(clean, ["reflectance"]) is clean
    # The limits of 0 and 1 hold whichever encoding carries them (float32 rounding of the offset).
    edges = to_physical(np.array([[[1000], [11000]]], np.uint16), [preset("reflectance", BOA_OFFSET_PRESET)])
    assert np.isfinite(mask_implausible(edges, ["reflectance"])).all()
    # Inference masks the same way: a band whose every value is impossible leaves nothing to fill.
    s2 = np.full((1, 12, len(BANDS["S2"])), 0.1, np.float32)
    s2[0, :, 3] = 3.0
    spec = input_spec("S2", [0.1] * 9, [0.05] * 9)
    x, valid = standardize(s2, spec)
    assert not valid[0] and x[0, :, 3].tolist() == [0.0] * 12


def test_s2_statistics_lose_the_unmasked_flanders_values(data_dir):
    flanders = "private_extractions_dummy_2021_BEL_LPIS-Flanders.parquet"
    raw = pd.read_parquet(data_dir / "worldcereal" / flanders)
    assert (raw["S2-L2A-B05"] > 10000).any()  # the defect is in the source ...
    data = load_dataset("crop_type", data_dir)
    s2 = data.physical["S2"]
    assert np.nanmax(s2) <= 1.0  # ... and gone after loading
    std = dict(zip(BANDS["S2"], data.input_specs(data.splits(0)["train"], ["S2"])["S2"].std, strict=True))
    for band in ("B05", "B06", "B07", "B11", "B12"):
        assert std[band] < 0.12, (band, std[band])  # 0.25 before masking


@pytest.mark.parametrize("name", REGIONAL)
def test_each_regional_dataset_trains_and_exports(data_dir, tmp_path, name):
    out = tmp_path / name
    run_cli("fit", "--config", str(CONFIGS / f"{name}.yaml"),
            "--config", str(CONFIGS / "methods/single.yaml"),
            "--set", "modalities=[S2]", "--set", "max_epochs=2", "--set", "net.filters=8",
            "--out", str(out), data_dir=data_dir)
    onnx = tmp_path / f"{name}.onnx"
    run_cli("export", "--run", str(out), "--out", str(onnx), data_dir=data_dir)
    card = read_card(onnx)
    expected = "East-African croplands" if name == "crop_type_east_africa" else "Belgian croplands"
    assert [r.name for r in card.footprint] == [expected]
    # Calendar months: November first in Belgium; East Africa mixes Dec (public) and Sep (Tanzania).
    assert card.time.alignment == "calendar"
    assert card.time.first_month == (None if name == "crop_type_east_africa" else 11)
    assert len(card.output.classes) == len(load_dataset(name, data_dir).info.classes)
