"""predict_block: the model step on in-memory arrays, equal to the engine on the real cube."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from eo_missing_qgis.core.block import BlockContext, BlockOutputs, output_names, predict_block, valid_pixels
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.raster_io import Grid, pixel_latlon
from eo_missing_qgis.core.session import open_session
from eo_missing_qgis.core.tiling import Window
from eo_missing_qgis.core.units import preset
from tests.engine_data import CUBE_TRANSFORM, cube_path, s2_stack
from tests.test_engine_spatial import spatial_card, spatial_onnx
from tests.tolerances import assert_same_classes

BUNDLED = "eo_missing_qgis/models/crop_type_europe_s2.onnx"
DN = [preset("reflectance", "reflectance x 10000 (L2A DN)")] * 9


def engine(model, data_dir, tmp_path) -> dict[str, np.ndarray]:
    out = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "e.tif",
                    options=RunOptions(write_probabilities=True))
    maps = {}
    for key, path in out.outputs.items():
        with rasterio.open(path) as ds:
            maps[key] = ds.read()
    return maps


def test_stored_values_with_encodings_equal_the_engine(tmp_path, data_dir):
    """The bundled model also takes the month (the cube's steps are 2020-11 .. 2021-10) and each
    pixel's latitude/longitude: given as the engine finds them, the maps agree."""
    session = open_session(BUNDLED)
    grid = Grid(CRS.from_epsg(32631), CUBE_TRANSFORM, 100, 100, (100, 100))
    lat, lon = pixel_latlon(grid, Window(0, 0, 100, 100))
    context = BlockContext(months=[11, 12, *range(1, 11)], lat=lat, lon=lon)
    out = predict_block({"S2": s2_stack(data_dir)}, session.card, session, encodings={"S2": DN},
                        probabilities=True, batch=777, context=context)
    expected = engine(BUNDLED, data_dir, tmp_path)
    np.testing.assert_allclose(out.probabilities, expected["probabilities"], atol=2e-5)
    np.testing.assert_allclose(out.confidence, expected["confidence"][0], atol=2e-5)
    assert_same_classes(out.prediction, expected["prediction"][0], expected["probabilities"])
    assert out.prediction.dtype == np.uint8 and (out.prediction[~out.valid] == 0).all()
    stacked = out.stacked()
    assert stacked.shape == (len(output_names(session.card, True)), 100, 100)
    back = BlockOutputs.from_stacked(session.card, stacked)
    np.testing.assert_array_equal(back.prediction, out.prediction)
    np.testing.assert_array_equal(back.valid, out.valid)


def test_spatial_block_trims_its_context(tmp_path, data_dir):
    model = spatial_onnx(tmp_path / "s.onnx", spatial_card(modalities=("S2",), activation="none"))
    session = open_session(model)
    physical = np.where(s2_stack(data_dir) == 65535, np.nan, s2_stack(data_dir) * np.float32(1e-4))
    out = predict_block({"S2": physical}, session.card, session, trim=2, probabilities=True)
    expected = engine(model, data_dir, tmp_path)["probabilities"][:, 2:-2, 2:-2]
    assert out.prediction.shape == (96, 96)
    np.testing.assert_allclose(out.probabilities, expected, atol=2e-5)  # softmax of the logits
    with pytest.raises(InputError, match="too small to trim 2 px"):
        predict_block({"S2": physical[..., :4, :4]}, session.card, session, trim=2)


def test_a_pixel_is_valid_when_every_band_has_one_date():
    x = np.ones((3, 2, 2, 2), dtype=np.float32)
    x[:2, 0, 0, 0] = np.nan     # two dates of one band missing: still valid, filled
    x[:, 1, 1, 1] = np.nan      # one band missing at every date: nodata
    assert valid_pixels({"S2": x}).tolist() == [[True, True], [True, False]]


def test_wrong_shapes_are_named(data_dir):
    session = open_session(BUNDLED)
    with pytest.raises(InputError, match=r"S2 must be \(time, bands, height, width\) with 12 time steps "
                                         r"and 9 bands .* got shape \(12, 100, 100\)"):
        predict_block({"S2": np.zeros((12, 100, 100))}, session.card, session)
    with pytest.raises(InputError, match="needs S2, the block has S1"):
        predict_block({"S1": np.zeros((12, 2, 4, 4))}, session.card, session)


def test_impossible_values_are_gaps_in_the_engine_as_in_training():
    """A reflectance of 3 is masked like training masks it (preprocessing.mask_implausible): the
    per-pixel tensors equal training's standardize, the step's mask is 0, the input is untouched."""
    from eo_missing_qgis.core.block import prepare_block
    from eo_missing_qgis.core.card import card_from_dict
    from eo_missing_qgis.core.preprocessing import standardize
    from tests.tiny_models import card_dict

    card = card_from_dict(card_dict(modalities=("S2",)))
    spec = card.inputs[0]
    x = np.full((card.time.steps, len(spec.bands), 1, 2), 0.1, np.float32)
    x[3, 4, 0, 1] = 3.0
    prepared = prepare_block({"S2": x}, card)
    expected, _ = standardize(x.transpose(2, 3, 0, 1).reshape(2, card.time.steps, -1), spec)
    np.testing.assert_allclose(prepared.tensors[spec.tensor], expected, rtol=1e-6, atol=1e-6)
    assert prepared.tensors[spec.tensor][1, 3, 4] == 0.0 and x[3, 4, 0, 1] == 3.0
