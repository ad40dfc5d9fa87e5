"""Card schema 1.2: time anchoring, ``min_steps`` and context inputs; older cards unchanged."""

from __future__ import annotations

import pytest

from eo_missing_qgis.core.card import (
    ModelCardError,
    card_from_dict,
    card_from_json,
    card_to_html,
    card_to_text,
)
from eo_missing_qgis.core.card.onnx_io import deepness_metadata

from .tiny_models import card_dict, context_card_dict


def test_context_card_round_trips_with_shapes():
    card = card_from_dict(context_card_dict())
    assert card_from_json(card.to_json()) == card
    data = card.to_dict()
    assert data["time"]["min_steps"] == 1
    shapes = {c["tensor"]: c["shape"] for c in data["context"]}
    assert shapes == {"s2_mask": ["batch", 12], "month": ["batch", 12, 2], "latlon": ["batch", 3]}
    text = card_to_text(card)
    assert "runs on 1 of them at least" in text and "Context input: month of each step" in text
    assert "availability of each step of S2" in card_to_html(card)
    assert deepness_metadata(card)["model_type"] == '"Segmentor"'


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_old_cards_parse_and_write_back_unchanged(version):
    data = card_dict("regression", ("S1", "S2"), steps=3)
    data["schema_version"] = version
    card = card_from_dict(data)
    assert card.context == () and card.time.min_steps is None and card.time.required == 3
    assert card.to_dict() == data


def test_calendar_without_first_month_needs_1_2():
    data = card_dict()
    data["time"].update(alignment="calendar", first_month=None)
    with pytest.raises(ModelCardError) as err:
        card_from_dict(data)
    assert err.value.field == "time.first_month"
    data["schema_version"] = "1.2"
    assert card_from_dict(data).time.first_month is None


def _spatial(d: dict) -> None:
    for spec in d["inputs"]:
        spec["layout"] = "NTCHW"


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d.update(schema_version="1.1"), "time.min_steps", "needs schema_version 1.2"),
        (lambda d: (d.update(schema_version="1.1"), d["time"].pop("min_steps")), "context",
         "needs schema_version 1.2"),
        (lambda d: d["time"].update(min_steps=13), "time.min_steps", "between 1 and 12"),
        (lambda d: d["context"][0].update(kind="cloud"), "context[0].kind", "one of mask, month, latlon"),
        (lambda d: d["context"][0].update(modality="S1"), "context[0].modality", "one of S2"),
        (lambda d: d["context"][0].pop("modality"), "context[0].modality", "required"),
        (lambda d: d["context"][1].update(modality="S2"), "context[1].modality", "masks only"),
        (lambda d: d["context"][1].update(encoding="degrees"), "context[1].encoding", "sin_cos, index"),
        (lambda d: d["context"][1].update(shape=["batch", 12]), "context[1].shape",
         r"must be ['batch', 12, 2]"),
        (lambda d: d["context"][2].update(tensor="s2"), "context[2].tensor", "already an input's tensor"),
        (lambda d: d["context"].append(dict(d["context"][1], tensor="m2")), "context[3].kind", "duplicates"),
        (lambda d: d["context"][2].update(size=3), "context[2].size", "not a field"),
        (_spatial, "context", "per-pixel models"),
    ],
)
def test_bad_context_declarations_name_one_field(mutate, field, words):
    data = context_card_dict()
    mutate(data)
    with pytest.raises(ModelCardError) as err:
        card_from_dict(data)
    assert err.value.field == field
    assert words in str(err.value)


def test_stac_item_lists_the_context_inputs_and_stays_valid():
    import pystac
    from pystac.extensions.mlm import MLMExtension

    from training.export import stac_item, with_stac_mlm

    from .test_publishable import INPUT_REQUIRED, STRUCTURE_REQUIRED, _core_validator

    card = with_stac_mlm(card_from_dict(context_card_dict()))
    inputs = {i["name"]: i["input"] for i in card.stac_mlm["mlm:input"]}
    assert list(inputs) == ["s2", "s2_mask", "month", "latlon"]
    assert inputs["month"] == {"shape": [-1, 12, 2], "dim_order": ["batch", "time", "values"],
                               "data_type": "float32"}
    assert inputs["latlon"]["shape"] == [-1, 3] and inputs["s2_mask"]["dim_order"] == ["batch", "time"]
    item = stac_item(card, "context.onnx")
    assert [e.message for e in _core_validator().iter_errors(item)] == []
    for obj in item["properties"]["mlm:input"]:
        assert all(k in obj for k in INPUT_REQUIRED) and all(k in obj["input"] for k in STRUCTURE_REQUIRED)
    mlm = MLMExtension.ext(pystac.Item.from_dict(item))
    assert [i.name for i in mlm.input] == ["s2", "s2_mask", "month", "latlon"]
    assert mlm.input[2].input.shape == [-1, 12, 2]


def test_export_writes_the_declared_time_axis_and_context(data_dir):
    from training.datasets import load_dataset
    from training.export import build_card

    run = {"config": {"modalities": ["S2"], "method": "kd", "dataset": "crop_type", "seed": 0},
           "steps": 12, "stats": {"S2": {"mean": [0.1] * 9, "std": [0.05] * 9}},
           "metrics": {"test": {"accuracy": 0.5}},
           "card": {"time": {"alignment": "calendar", "first_month": None, "min_steps": 1},
                    "context": context_card_dict()["context"]}}
    info = load_dataset("crop_type", data_dir).info
    card = build_card(run, info, "ctx")
    assert card.time.min_steps == 1 and [c.tensor for c in card.context] == ["s2_mask", "month", "latlon"]
    assert [i["name"] for i in card.stac_mlm["mlm:input"]] == ["s2", "s2_mask", "month", "latlon"]
    run["card"]["context"][0]["modality"] = "S1"
    with pytest.raises(ModelCardError) as err:
        build_card(run, info, "ctx")
    assert err.value.field == "context[0].modality"
