"""Recognising layers and mapping them onto a card's bands x time steps (three layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from eo_missing_qgis.core.card import card_from_dict
from eo_missing_qgis.core.errors import InputError
from eo_missing_qgis.core.preprocessing import decode
from eo_missing_qgis.core.raster_inputs import match_inputs
from eo_missing_qgis.core.raster_io import read_header
from eo_missing_qgis.core.recognition import RasterInput, identify, normalise_band, recognise
from eo_missing_qgis.core.units import Encoding, preset
from tests.engine_data import S1_VARS, S2_VARS, cube_path, s2_stack, variable, write_tif
from tests.tiny_models import S2_BANDS, card_dict


@pytest.mark.parametrize("text, expected", [
    ("S2-L2A-B04", ("S2", "B04")), ("B4", ("S2", "B04")), ("b04", ("S2", "B04")),
    ("sentinel2_B8A_2021", ("S2", "B8A")), ("T31UFS_20210601_B11_20m", ("S2", "B11")),
    ("S1-SIGMA0-VV", ("S1", "VV")), ("sigma0_vh", ("S1", "VH")), ("VV", ("S1", "VV")),
    ("s1_vv_db", ("S1", "VV")), ("elevation", ("DEM", "elevation")),
    ("AGERA5-TMEAN", ("weather", "temperature")),
    ("my_layer", None), ("", None),
])
def test_identify_common_spellings(text, expected):
    assert identify(text) == expected


def test_normalise_band():
    assert normalise_band("S2", "b8a") == "B8A"
    assert normalise_band("S2", "B2") == "B02"
    assert normalise_band("S1", "vh") == "VH"
    assert normalise_band("weather", "temperature_2m") == normalise_band("weather", "AGERA5-TMEAN")
    assert normalise_band("DEM", "Elevation") == "elevation"


def recognised(layer: str | RasterInput):
    """Recognise a layer (a path, or a RasterInput saying more) from its header."""
    layer = layer if isinstance(layer, RasterInput) else RasterInput(layer)
    return recognise(layer, read_header(layer.path))


def test_recognise_netcdf_variables(data_dir):
    rec = recognised(variable(data_dir, "S1-SIGMA0-VV"))
    assert (rec.modality, rec.band, rec.layout, rec.count) == ("S1", "VV", "band_per_layer", 12)
    assert "S1-SIGMA0-VV" in rec.reason
    assert recognised(RasterInput(variable(data_dir, "S2-L2A-B12"))).band == "B12"


def test_recognise_layer_name_and_descriptions(tmp_path):
    plain = write_tif(tmp_path / "layer.tif", np.ones((12, 4, 4), np.uint16))
    assert recognised(RasterInput(plain, name="Sentinel-2 B04 2021")).band == "B04"
    assert recognised(plain).modality is None
    dated = write_tif(tmp_path / "date.tif", np.ones((9, 4, 4), np.uint16), descriptions=S2_BANDS)
    rec = recognised(dated)
    assert (rec.modality, rec.layout, rec.bands) == ("S2", "date_per_layer", tuple(S2_BANDS))
    stacked = write_tif(tmp_path / "stack.tif", np.ones((18, 4, 4), np.uint16),
                        descriptions=[f"{b}_t{t}" for t in range(9) for b in ("VV", "VH")])
    rec = recognised(stacked)
    assert (rec.modality, rec.layout, rec.bands) == ("S1", "stacked", ("VV", "VH"))


def test_cube_file_maps_every_slot(data_dir):
    card = card_from_dict(card_dict(modalities=("S1", "S2")))
    plan = match_inputs(card, [RasterInput(cube_path(data_dir))])
    assert len(plan.slots["S2"]) == 12 and all(len(row) == 9 for row in plan.slots["S2"])
    s1 = plan.slots["S1"][4][0]
    assert plan.inputs[s1.input].path.endswith(":S1-SIGMA0-VV") and s1.band_index == 5
    assert s1.encoding == preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")
    assert plan.slots["S2"][0][2].encoding == preset("reflectance", "reflectance x 10000 (L2A DN)")
    assert any("slope" in w for w in plan.warnings)  # unused layers are reported, not refused


def test_date_per_layer_and_stacked_layouts(tmp_path, data_dir):
    card = card_from_dict(card_dict(steps=12))
    values = s2_stack(data_dir)
    dates = [RasterInput(write_tif(tmp_path / f"month{t}.tif", values[t]), modality="S2",
                         layout="date_per_layer", bands=S2_BANDS, time_index=t) for t in range(12)]
    plan = match_inputs(card, dates)
    assert plan.slots["S2"][7][3].input == 7 and plan.slots["S2"][7][3].band_index == 4
    stack = write_tif(tmp_path / "stack.tif", values.reshape(12 * 9, 100, 100))
    plan = match_inputs(card, [RasterInput(stack, modality="S2", layout="stacked", bands=S2_BANDS)])
    slot = plan.slots["S2"][2][5]
    assert slot.band_index == 2 * 9 + 5 + 1


def test_explicit_mapping_overrides_names(tmp_path, data_dir):
    card = card_from_dict(card_dict(steps=12))
    inputs = []
    for b in S2_BANDS:  # files named band_0..8: nothing identifies them, the caller says
        arr = s2_stack(data_dir)[:, S2_BANDS.index(b)]
        inputs.append(RasterInput(write_tif(tmp_path / f"band_{S2_BANDS.index(b)}.tif", arr),
                                  modality="S2", band=b.replace("B0", "B"), encoding=Encoding(scale=1e-4)))
    plan = match_inputs(card, inputs)
    assert plan.slots["S2"][0][0].encoding == Encoding(scale=1e-4)
    assert "S2 B02" in plan.describe()


def test_encoding_by_preset_name(data_dir):
    card = card_from_dict(card_dict(modalities=("S1",)))
    inputs = [RasterInput(variable(data_dir, v), encoding="dB x 10000 integers") for v in S1_VARS.values()]
    plan = match_inputs(card, inputs)
    assert plan.slots["S1"][0][1].encoding == Encoding(scale=1e-4)


def test_missing_lists_every_band(data_dir):
    card = card_from_dict(card_dict(modalities=("S1", "S2")))
    inputs = [RasterInput(variable(data_dir, v)) for b, v in S2_VARS.items() if b not in ("B05", "B11")]
    with pytest.raises(InputError) as err:
        match_inputs(card, inputs)
    msg = str(err.value)
    assert "S2 B05 (all 12 time steps)" in msg and "S2 B11" in msg and "S1 VV" in msg and "S1 VH" in msg
    assert "B04" not in msg.split("missing:")[1].split("\n")[0]


def test_decoding_integers_and_floats_agree_and_leaves_input_alone():
    """The engine's fast path for integer rasters decodes exactly like floats do."""
    enc = preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")
    dn = np.array([[1, 1000, 65535], [0, 20000, 30000]], dtype=np.uint16)
    as_float = dn.astype(np.float32)
    copy = as_float.copy()
    np.testing.assert_array_equal(decode(dn, enc), decode(as_float, enc))
    np.testing.assert_array_equal(as_float, copy)
    l2a = preset("reflectance", "reflectance x 10000 (L2A DN)")
    refl = decode(np.array([0, 2500, 65535], np.uint16), l2a)
    np.testing.assert_allclose(refl[:2], [0.0, 0.25])
    assert np.isnan(refl[2])
