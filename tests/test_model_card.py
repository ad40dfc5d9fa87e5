"""The model-card contract: round trips, errors that name the field, ONNX storage, fuzzing."""

from __future__ import annotations

import copy
import json

import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eo_missing_qgis.core.card import (
    CARD_KEY,
    ModelCardError,
    card_from_dict,
    card_from_json,
    card_to_html,
    card_to_text,
    read_card,
    read_metadata_props,
)

from .tiny_models import card_dict, tiny_onnx


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_round_trip(task):
    card = card_from_dict(card_dict(task, ("S1", "S2")))
    again = card_from_json(card.to_json())
    assert again == card
    assert again.modalities == ["S1", "S2"]
    assert again.input_for("S2").band_names[-1] == "B12"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("task"), "task"),
        (lambda d: d.update(task="segmentation"), "task"),
        (lambda d: d["inputs"][0]["bands"][2].update(unit="furlong"), "inputs[0].bands[2].unit"),
        (lambda d: d["inputs"][0]["scaling"]["std"].pop(), "inputs[0].scaling.std"),
        (lambda d: d["inputs"][0]["scaling"]["std"].__setitem__(1, 0.0), "inputs[0].scaling.std[1]"),
        (lambda d: d["inputs"][0]["bands"][1].update(name="B02"), "inputs[0].bands[1].name"),
        (lambda d: d["inputs"].append(copy.deepcopy(d["inputs"][0])), "inputs[1].modality"),
        (lambda d: d["time"].update(steps=0), "time.steps"),
        (lambda d: d["time"].update(alignment="calendar"), "time.first_month"),
        (lambda d: d["output"]["classes"][0].update(color="red"), "output.classes[0].color"),
        (lambda d: d["output"]["classes"][1].update(id=1), "output.classes[1].id"),
        (lambda d: d["output"]["classes"][0].update(id=0), "output.classes[0].id"),
        (lambda d: d["output"].update(classes=d["output"]["classes"][:1]), "output.classes"),
        (lambda d: d["provenance"]["metrics"].update(f1="high"), "provenance.metrics.f1"),
        (lambda d: d.update(halo=True), "halo"),
        (lambda d: d.update(halo=4), "halo"),
        (lambda d: d["inputs"][0].update(layout="NCHW"), "inputs[0].layout"),
        (lambda d: d["inputs"][0].update(layout="NTCHW"), "inputs[0].layout"),  # needs schema 1.1
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.update(schema_version="2.0"), "schema_version"),
        (lambda d: d.update(schema_version=1.0), "schema_version"),
    ],
)
def test_bad_cards_name_the_field(mutate, field):
    data = card_dict("classification")
    mutate(data)
    with pytest.raises(ModelCardError) as err:
        card_from_dict(data)
    assert err.value.field == field
    assert field in str(err.value)


def spatial_dict(modalities=("S1", "S2"), halo: int = 4) -> dict:
    data = card_dict("classification", modalities)
    data.update(schema_version="1.1", halo=halo)
    for spec in data["inputs"]:
        spec["layout"] = "NTCHW"
    return data


@pytest.mark.parametrize("halo", [0, 4])
def test_spatial_cards_round_trip(halo):
    card = card_from_dict(spatial_dict(halo=halo))
    assert card.spatial and card.halo == halo and card.inputs[1].layout == "NTCHW"
    assert card_from_json(card.to_json()) == card
    assert not card_from_dict(card_dict()).spatial


@pytest.mark.parametrize(
    ("mutate", "field", "says"),
    [
        (lambda d: d["inputs"][1].update(layout="NTC"), "inputs[1].layout", "share one layout"),
        (lambda d: [i.update(layout="NTC") for i in d["inputs"]], "halo", "needs layout NTCHW"),
        (lambda d: d.update(schema_version="1.0"), "inputs[0].layout", "needs schema_version 1.1"),
    ],
)
def test_spatial_layout_rules(mutate, field, says):
    data = spatial_dict()
    mutate(data)
    with pytest.raises(ModelCardError, match=says) as err:
        card_from_dict(data)
    assert err.value.field == field


def test_regression_range_must_increase():
    data = card_dict("regression")
    data["output"]["range"] = [300.0, 30.0]
    with pytest.raises(ModelCardError, match=r"output\.range"):
        card_from_dict(data)


def test_newer_minor_version_is_read_and_unknown_fields_ignored():
    data = card_dict("classification")
    data["schema_version"] = "1.7"
    data["uncertainty"] = {"method": "ensemble"}
    data["inputs"][0]["resolution_m"] = 10
    card = card_from_dict(data)
    assert card.schema_version == "1.7"
    assert card.inputs[0].band_names == card_from_dict(card_dict()).inputs[0].band_names


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"card"'])
def test_not_json_or_not_object(text):
    with pytest.raises(ModelCardError):
        card_from_json(text)


def test_onnx_storage_and_deepness_keys(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx", card_dict("classification", ("S2",), steps=3))
    props = read_metadata_props(path)
    # The hand-rolled protobuf reader agrees with ONNX Runtime's view of the same file.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert props == dict(session.get_modelmeta().custom_metadata_map)
    assert props["model_type"] == "Segmentor"
    assert json.loads(props["class_names"]) == {"0": "cereals", "1": "maize", "2": "grassland"}
    assert len(json.loads(props["standardization_mean"])) == 3 * 9
    card = read_card(path)
    assert card.time.steps == 3
    assert "cereals" in card_to_html(card) and "B12 (reflectance)" in card_to_text(card)


def test_onnx_without_card_and_non_onnx(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx", card_dict())
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelCardError, match=CARD_KEY):
        read_card(tmp_path / "bare.onnx")
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 10)
    with pytest.raises(ModelCardError, match="not an ONNX model"):
        read_card(tmp_path / "text.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelCardError):
        read_card(tmp_path / "empty.onnx")
    with pytest.raises(ModelCardError, match="cannot read"):
        read_card(tmp_path / "missing.onnx")


# -- fuzzing: any mutation of a valid card is either a valid card or a ModelCardError -----------
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-300, 300), st.floats(allow_nan=True),
    st.text(max_size=8), st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_cards(draw):
    data = card_dict(draw(st.sampled_from(["classification", "regression"])),
                     draw(st.sampled_from([("S1",), ("S2",), ("S1", "S2")])))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1]] = draw(_VALUES)
    return data


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_cards())
def test_fuzzed_cards_are_valid_or_model_card_errors(data):
    try:
        card = card_from_dict(data)
    except ModelCardError as exc:
        assert exc.field
        return
    assert card_from_json(card.to_json()) == card
