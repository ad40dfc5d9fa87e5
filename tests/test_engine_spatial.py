"""Spatial (NTCHW) models: overlapping tiles with blended predictions, on the real WorldCereal cube.

The test model is a real ONNX graph: time mean of the bands, two 3 x 3 convolutions (receptive
radius 2 px), softmax over classes. With a card halo of 2 every kept prediction saw its whole
receptive field, so small tiles give the one-window result; with a halo of 1 they cannot, and the
seams show the blend.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from eo_missing_qgis.core.blending import OverlapBlend
from eo_missing_qgis.core.card import ModelCard, ModelCardError, card_from_dict, embed_card
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import Cancelled, ModelError
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.session import open_session
from eo_missing_qgis.core.tiling import halo_tiles
from tests.engine_data import CUBE_TRANSFORM, CancelAfter, cube_path, s2_stack, variable, write_tif
from tests.tiny_models import S2_BANDS, card_dict, tiny_onnx
from tests.tolerances import assert_same_classes

RADIUS = 2  # two 3 x 3 convolutions


def spatial_card(task: str = "classification", modalities=("S1", "S2"), halo: int = RADIUS,
                 activation: str = "softmax") -> ModelCard:
    data = card_dict(task, modalities)
    data.update(schema_version="1.1", halo=halo, tile_size=64, name=f"spatial_{task}_halo{halo}")
    for spec in data["inputs"]:
        spec["layout"] = "NTCHW"
    if task == "classification":
        data["output"]["activation"] = activation
    return card_from_dict(data)


def spatial_onnx(path, card: ModelCard) -> str:
    """(N, T, C, H, W) per input -> time mean -> concat -> 3x3 conv -> relu -> 3x3 conv [-> softmax]."""
    rng = np.random.default_rng(1)
    nodes, inputs, pooled = [], [], []
    for spec in card.inputs:
        inputs.append(helper.make_tensor_value_info(
            spec.tensor, TensorProto.FLOAT, ["batch", card.time.steps, len(spec.bands), "height", "width"]))
        nodes.append(helper.make_node("ReduceMean", [spec.tensor], [f"{spec.tensor}_mean"],
                                      axes=[1], keepdims=0))
        pooled.append(f"{spec.tensor}_mean")
    c = sum(len(s.bands) for s in card.inputs)
    k = len(card.output.classes) if card.task == "classification" else 1
    inits = [numpy_helper.from_array((rng.normal(size=(6, c, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.normal(size=(k, 6, 3, 3)) * 0.3).astype(np.float32), "w2")]
    last = card.output.tensor if card.task == "regression" or card.output.activation == "none" else "raw"
    nodes += [helper.make_node("Concat", pooled, ["features"], axis=1),
              helper.make_node("Conv", ["features", "w1"], ["c1"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"]),
              helper.make_node("Conv", ["r1", "w2"], [last], pads=[1, 1, 1, 1])]
    if last == "raw":
        nodes.append(helper.make_node("Softmax", ["raw"], [card.output.tensor], axis=1))
    out = helper.make_tensor_value_info(card.output.tensor, TensorProto.FLOAT,
                                        ["batch", k, "height", "width"])
    model = helper.make_model(helper.make_graph(nodes, card.name, inputs, [out], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    embed_card(model, card)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("spatial")
    return {
        "cls": spatial_onnx(d / "cls.onnx", spatial_card()),
        "logits": spatial_onnx(d / "logits.onnx", spatial_card(activation="none")),
        "reg": spatial_onnx(d / "reg.onnx", spatial_card("regression")),
        "s2": spatial_onnx(d / "s2.onnx", spatial_card(modalities=("S2",))),
        "short": spatial_onnx(d / "short.onnx", spatial_card(modalities=("S2",), halo=1)),
    }


def run(model, inputs, out, tile, **kw):
    return run_model(model, inputs, out, options=RunOptions(tile_size=tile, write_probabilities=True), **kw)


def read(path, band=None):
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


@pytest.mark.parametrize("name", ["cls", "logits", "reg"])
def test_small_tiles_give_the_one_window_result(tmp_path, data_dir, models, name):
    cube = [RasterInput(cube_path(data_dir))]
    fractions: list[float] = []
    tiled = run(models[name], cube, tmp_path / "tiled.tif", 24, progress=fractions.append)
    whole = run(models[name], cube, tmp_path / "whole.tif", 4096)
    assert len(fractions) == 25 and fractions[-1] == 1.0  # 5 x 5 overlapping tiles
    assert tiled.pixels_predicted == whole.pixels_predicted == 10000
    key = "prediction" if name == "reg" else "probabilities"
    a, b = read(tiled.outputs[key]), read(whole.outputs[key])
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=2e-5)
    if name != "reg":
        np.testing.assert_allclose(a.sum(axis=0), 1.0, rtol=1e-5)
        assert_same_classes(read(tiled.outputs["prediction"], 1), read(whole.outputs["prediction"], 1), b)
    with rasterio.open(variable(data_dir, "S2-L2A-B04")) as src, \
            rasterio.open(tiled.outputs["prediction"]) as ds:
        assert ds.crs == src.crs and ds.transform.almost_equals(src.transform)
        assert (ds.width, ds.height) == (100, 100) and ds.transform == CUBE_TRANSFORM
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.split("/")[-1] for r in (tiled, whole) for p in r.outputs.values())


def standardized_s2(data_dir, card: ModelCard) -> np.ndarray:
    """The cube's S2 as the network sees it, (1, T, C, H, W), computed by hand."""
    raw = s2_stack(data_dir).astype(np.float32)
    phys = np.where(raw == 65535, np.nan, raw * np.float32(1e-4))
    phys[phys > 1] = np.nan  # reflectance above 1 (bright clouds) is impossible: missing
    spec = card.inputs[0]
    x = (phys - np.float32(spec.mean)[:, None, None]) / np.float32(spec.std)[:, None, None]
    return np.nan_to_num(x).astype(np.float32)[None]


def test_blend_weights_are_used_at_the_seams(tmp_path, data_dir, models):
    """A halo shorter than the receptive field: tiles differ from one window at the seams, and the
    engine's output is exactly the weighted blend of the tiles' predictions."""
    cube = [RasterInput(cube_path(data_dir))]
    tiled = read(run(models["short"], cube, tmp_path / "t.tif", 24).outputs["probabilities"])
    whole = read(run(models["short"], cube, tmp_path / "w.tif", 4096).outputs["probabilities"])
    session = open_session(models["short"])
    x = standardized_s2(data_dir, session.card)
    blended, cropped = np.zeros_like(whole), np.zeros_like(whole)
    for t in halo_tiles(100, 100, (24, 24), 1):
        r, k = t.window("read"), t.window("keep")
        pred = session.run({"s2": x[..., r.row:r.row + r.height, r.col:r.col + r.width]})[0][0]
        pred = pred[:, k.row - r.row:k.row - r.row + k.height, k.col - r.col:k.col - r.col + k.width]
        blended[:, k.slices()[0], k.slices()[1]] += pred * t.weights
        # Without blending: each pixel from the one tile whose core holds it.
        core = slice(t.i * 24 - k.row, t.i * 24 - k.row + 24), slice(t.j * 24 - k.col, t.j * 24 - k.col + 24)
        part = pred[:, core[0], core[1]]
        cropped[:, t.i * 24:t.i * 24 + part.shape[1], t.j * 24:t.j * 24 + part.shape[2]] = part
    np.testing.assert_allclose(tiled, blended, atol=2e-5)
    assert np.abs(tiled - whole).max() > 1e-3            # the short halo shows at the seams ...
    assert np.abs(tiled - cropped).max() > 1e-3          # ... and the blend is not a crop
    seams = np.zeros((100, 100), dtype=bool)
    for s in (24, 48, 72, 96):
        seams[s - 4:s + 4] = seams[:, s - 4:s + 4] = True
    np.testing.assert_allclose(tiled[:, ~seams], whole[:, ~seams], atol=2e-5)  # away from them: equal


def test_nodata_is_kept_out_but_seen_as_context(tmp_path, data_dir, models):
    values = s2_stack(data_dir).astype(np.float32) / 10000
    values[:, :, 10:20, 30:60] = np.nan  # every date missing: nodata, filled with the band mean
    layer = RasterInput(write_tif(tmp_path / "s2.tif", values.reshape(108, 100, 100)),
                        modality="S2", layout="stacked", bands=S2_BANDS)
    (tmp_path / "o").mkdir()
    tiled = run(models["s2"], [layer], tmp_path / "o" / "t.tif", 16)
    whole = run(models["s2"], [layer], tmp_path / "o" / "w.tif", 4096)
    assert tiled.pixels_nodata == whole.pixels_nodata == 300 and tiled.pixels_predicted == 9700
    cls, conf = read(tiled.outputs["prediction"], 1), read(tiled.outputs["confidence"], 1)
    assert (cls[10:20, 30:60] == 0).all() and np.isnan(conf[10:20, 30:60]).all()
    assert (cls > 0).sum() == 9700 and np.isfinite(conf[cls > 0]).all()
    # The hole crosses tile seams; its filled pixels are context for their neighbours in the same
    # way whatever the tiles.
    np.testing.assert_allclose(read(tiled.outputs["probabilities"]), read(whole.outputs["probabilities"]),
                               atol=2e-5)


def test_cancel_leaves_nothing_behind(tmp_path, data_dir, models):
    token = CancelAfter(12)
    with pytest.raises(Cancelled):
        run(models["cls"], [RasterInput(cube_path(data_dir))], tmp_path / "x.tif", 24, cancel=token)
    assert token.checks == 12
    assert list(tmp_path.iterdir()) == []


def test_card_mixing_ntc_with_a_halo_is_refused():
    data = card_dict()
    data["halo"] = 3
    with pytest.raises(ModelCardError) as err:
        card_from_dict(data)
    assert err.value.field == "halo" and "needs layout NTCHW" in str(err.value)


def test_spatial_card_on_a_per_pixel_graph_is_refused(tmp_path, data_dir):
    """The per-pixel graph (N, T, C) under a spatial card: the card/graph check names the layout."""
    path = tiny_onnx(tmp_path / "m.onnx", card_dict(modalities=("S2",)))
    m = onnx.load(str(path))
    embed_card(m, spatial_card(modalities=("S2",)))
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match=r"layout NTCHW needs 5 \(batch, time, bands, height, width\)"):
        run_model(str(path), [RasterInput(cube_path(data_dir))], tmp_path / "o.tif")
    assert not list(tmp_path.glob("*.tif"))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 80), st.integers(1, 80), st.integers(2, 30), st.integers(2, 30), st.integers(0, 6),
       st.integers(1, 3))
def test_streamed_blend_writes_every_pixel_once_with_the_full_sum(height, width, th, tw, halo, k):
    """Against a whole-raster accumulation: each pixel handed out once, with its complete sum."""
    th, tw = max(th, 2 * halo), max(tw, 2 * halo)
    rng = np.random.default_rng(height * 1000 + width)
    expected = np.zeros((k, height, width), dtype=np.float64)
    got = np.full((k, height, width), np.nan)
    count = np.zeros((height, width), dtype=int)
    blend = OverlapBlend(k, width)
    for t in halo_tiles(height, width, (th, tw), halo):
        keep = t.window("keep")
        pred = rng.normal(size=(k, keep.height, keep.width)).astype(np.float32)
        expected[:, keep.slices()[0], keep.slices()[1]] += pred * t.weights
        done, sums = blend.add(t, pred)
        got[:, done.slices()[0], done.slices()[1]] = sums
        count[done.slices()] += 1
    assert (count == 1).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    ones = OverlapBlend(1, width)
    for t in halo_tiles(height, width, (th, tw), halo):
        _, sums = ones.add(t, np.ones((1, t.window("keep").height, t.window("keep").width), np.float32))
        np.testing.assert_allclose(sums, 1.0, rtol=1e-5)  # the weights sum to one


def test_standardize_spatial_layout_matches_per_pixel():
    """The same numbers in NTCHW as in NTC; validity per pixel; a wrong shape names the layout."""
    from eo_missing_qgis.core.preprocessing import standardize

    card, flat = spatial_card(modalities=("S2",)), card_from_dict(card_dict(modalities=("S2",)))
    x = np.random.default_rng(0).uniform(0, 0.4, size=(2, 12, 9, 3, 4)).astype(np.float32)
    x[1, :, 4, 2, 3] = np.nan
    spatial, valid = standardize(x.copy(), card.inputs[0])
    per_pixel, valid_px = standardize(x.transpose(0, 3, 4, 1, 2).reshape(-1, 12, 9), flat.inputs[0])
    np.testing.assert_allclose(spatial.transpose(0, 3, 4, 1, 2).reshape(-1, 12, 9), per_pixel, rtol=1e-6)
    assert valid.shape == (2, 3, 4) and not valid[1, 2, 3] and valid.sum() == 23
    np.testing.assert_array_equal(valid.ravel(), valid_px)
    with pytest.raises(ValueError, match=r"\(batch, time, 9, H, W\)"):
        standardize(x[0], card.inputs[0])
