"""Choosing the bundled model that fits the layers present."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eo_missing_qgis.core.model_index import NoModelError, load_index, select_model


@pytest.fixture
def models(tmp_path) -> list:
    entries = [
        {"file": f"lfmc_{m.lower().replace('+', '_')}.onnx", "task": "lfmc",
         "task_title": "Live fuel moisture content", "modalities": m.split("+"), "name": f"lfmc_{m}",
         "title": f"LFMC from {m}"}
        for m in ("S1", "S2", "S1+S2")
    ]
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "models": entries}))
    return load_index(tmp_path)


@pytest.mark.parametrize(
    ("available", "chosen"),
    [({"S1"}, ("S1",)), ({"S2"}, ("S2",)), ({"S1", "S2"}, ("S1", "S2")), ({"S2", "DEM"}, ("S2",))],
)
def test_selection_for_each_combination(models, available, chosen):
    model, reason = select_model(models, "lfmc", available)
    assert model.modalities == chosen
    assert model.title in reason
    if available == {"S2", "DEM"}:
        assert "DEM not used" in reason
    if chosen != ("S1", "S2"):
        assert "would also need" in reason


def test_nothing_fits(models):
    with pytest.raises(NoModelError, match="Add layers of: Sentinel-1 for"):
        select_model(models, "lfmc", {"DEM"})
    with pytest.raises(NoModelError, match="bundled tasks: lfmc"):
        select_model(models, "crop_type", {"S1"})


def test_missing_index_and_bad_version(tmp_path):
    assert load_index(tmp_path) == []
    (tmp_path / "index.json").write_text('{"version": 9, "models": []}')
    with pytest.raises(ValueError, match="unsupported index version"):
        load_index(tmp_path)


def test_incomplete_richer_model_gives_way_and_says_what_it_lacked(models):
    """Issue 11: all S1 but only some S2 bands: the S1 model runs, the reason names what S2 lacked;
    with the S2 bands added the S1 + S2 model is chosen again."""
    lacking = "the layers do not match model 'lfmc_S1+S2':\n- missing: S2 B06 (all 3 time steps)"
    model, reason = select_model(models, "lfmc", {"S1", "S2"},
                                 lambda m: lacking if "S2" in m.modalities else "")
    assert model.modalities == ("S1",)
    assert ("not 'LFMC from S1+S2': its Sentinel-2 layers are incomplete (missing: S2 B06 (all 3 time "
            "steps)); add what they lack to use it") in reason
    assert "would also need" not in reason and "not used by this model" not in reason
    model, reason = select_model(models, "lfmc", {"S1", "S2"}, lambda m: "")
    assert model.modalities == ("S1", "S2") and "incomplete" not in reason
    model, _ = select_model(models, "lfmc", {"S1", "S2"}, lambda m: lacking)  # none complete
    assert model.modalities == ("S1", "S2")


def test_place_decides_before_sensors_and_a_model_without_footprint_beats_a_far_one(tmp_path):
    """The footprint in index.json is read without opening an ONNX file; a model that says nothing
    of where it holds is preferred to one known to be far, and a model known to be here to both."""
    square = {"name": "square", "samples": 9, "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    entries = [
        {"file": "near.onnx", "task": "t", "task_title": "T", "modalities": ["S2"], "name": "near",
         "title": "Near", "footprint": [square]},
        {"file": "global.onnx", "task": "t", "task_title": "T", "modalities": ["S1", "S2"], "name": "global",
         "title": "Global"},
    ]
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "models": entries}))
    models = load_index(tmp_path)
    assert models[0].footprint[0].polygon[2] == (1.0, 1.0) and models[1].footprint == ()
    inside, far = np.array([[0.5, 0.5]]), np.array([[40.0, 40.0]])
    model, reason = select_model(models, "t", {"S1", "S2"}, outline=inside)
    assert model.name == "near" and reason.startswith("Input is in square, where 'Near' was trained; not "
                                                      "used here: 'Global', trained in an unknown area")
    model, reason = select_model(models, "t", {"S1", "S2"}, outline=far)
    assert model.name == "global" and "'Global' has no training footprint" in reason
    assert models[0].outside(far).km > 4000 and models[0].outside(inside) is None
    assert select_model(models, "t", {"S1", "S2"})[0].name == "global"  # no place given: sensors only
