"""Encodings decode stored values to the physical units models are trained on."""

from __future__ import annotations

import numpy as np
import pytest

from eo_missing_qgis.core.preprocessing import decode
from eo_missing_qgis.core.units import Encoding, implausible_fraction, preset


def test_worldcereal_dn_to_db():
    enc = preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")
    out = decode(np.array([1000.0, 65535, 0, np.nan]), enc)
    assert out[0] == pytest.approx(20 * np.log10(1000) - 83)  # -23 dB
    assert np.isnan(out[1:]).all()


def test_linear_power_and_scaled_db():
    assert decode(np.array([0.01]), preset("dB", "linear power"))[0] == pytest.approx(-20.0)
    assert decode(np.array([-152000]), preset("dB", "dB x 10000 integers"))[0] == pytest.approx(-15.2)


def test_reflectance_and_weather():
    assert decode(np.array([2500]), preset("reflectance", "reflectance x 10000 (L2A DN)"))[0] == \
        pytest.approx(0.25)
    offset_dn = preset("reflectance", "L2A DN with offset -1000 (baseline 04.00+)")
    assert decode(np.array([3500]), offset_dn)[0] == pytest.approx(0.25)
    assert decode(np.array([28815]), preset("K", "K x 100 (AgERA5)"))[0] == pytest.approx(288.15)
    assert decode(np.array([15.0]), preset("K", "degree Celsius"))[0] == pytest.approx(288.15)
    assert decode(np.array([0.002]), preset("mm", "m (ERA5)"))[0] == pytest.approx(2.0)


def test_identity_and_errors():
    x = np.array([1.5, -3.0], dtype=np.float32)
    np.testing.assert_array_equal(decode(x, preset("dB")), x)
    with pytest.raises(ValueError, match="unknown unit"):
        preset("furlong")
    with pytest.raises(ValueError, match="no encoding"):
        preset("dB", "kelvin")
    with pytest.raises(ValueError, match="kind"):
        Encoding("log")
    with pytest.raises(ValueError, match="scale"):
        Encoding(scale=0)


def test_implausible_fraction_flags_reflectance_given_as_db():
    dn = np.array([1200.0, 2500.0, np.nan])
    assert implausible_fraction(decode(dn, preset("reflectance")), "reflectance") == 1.0
    assert implausible_fraction(decode(dn, preset("reflectance", "reflectance x 10000 (L2A DN)")),
                                "reflectance") == 0.0
    assert implausible_fraction(np.array([np.nan]), "dB") == 0.0


def test_prepare_decodes_standardizes_and_flags_missing():
    from eo_missing_qgis.core.card import card_from_dict
    from eo_missing_qgis.core.preprocessing import band_statistics, prepare

    from .tiny_models import card_dict

    spec = card_from_dict(card_dict("classification", ("S1",), steps=2)).input_for("S1")
    dn = preset("dB", "WorldCereal DN (20 log10 DN - 83, nodata 65535)")
    raw = np.array([[[1000, 1000], [1000, 1000]], [[1000, 65535], [1000, 1000]],
                    [[1000, 65535], [1000, 65535]]], dtype=np.uint16)
    x, valid = prepare(raw, [dn, dn], spec)
    assert x.dtype == np.float32 and x.shape == (3, 2, 2)
    # The engine's rule: a band missing in one month is filled, a band missing in every month is not.
    assert valid.tolist() == [True, True, False]
    assert x[0, 0, 0] == pytest.approx((-23.0 - spec.mean[0]) / spec.std[0], rel=1e-5)
    assert x[1, 0, 1] == 0.0  # missing -> band mean
    mean, std = band_statistics(np.array([[[1.0, np.nan]], [[3.0, 5.0]]]))
    assert mean == [2.0, 5.0] and std == [1.0, 1.0]  # a constant band keeps std 1
    with pytest.raises(ValueError, match="needs"):
        prepare(raw[..., :1], [dn], spec)
