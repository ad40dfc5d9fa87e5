"""Choosing the bundled model that fits the layers present."""

from __future__ import annotations

import json

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
