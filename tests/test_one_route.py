"""One route through a run on the real cube: the card is read once, every layer's header is read
once (and the layer opened once more, for its pixels), and all outputs are published together."""

from __future__ import annotations

import traceback
from collections import Counter

import numpy as np
import processing
import pytest
import rasterio

from eo_missing_qgis.core.card import onnx_io
from eo_missing_qgis.core.definitions import BANDS, Modality
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import OutputError
from eo_missing_qgis.core.model_index import MODELS_DIR
from eo_missing_qgis.core.prediction import PredictionRequest, run_prediction
from eo_missing_qgis.core.recognition import RasterInput
from tests.engine_data import cube_path, variable

CROP_S1 = MODELS_DIR / "crop_type_europe_s1.onnx"


class Opens:
    """Counts every read-mode ``rasterio.open`` by path and purpose, and every card read."""

    def __init__(self, monkeypatch):
        self.rasters: Counter = Counter()
        self.cards: Counter = Counter()
        real_open, real_props = rasterio.open, onnx_io.read_metadata_props

        def counting_open(fp, mode="r", *args, **kwargs):
            if mode == "r":
                stack = {frame.name for frame in traceback.extract_stack()}
                purpose = ("header" if "read_header" in stack else
                           "subdatasets" if "subdatasets" in stack else "pixels")
                self.rasters[str(fp), purpose] += 1
            return real_open(fp, mode, *args, **kwargs)

        def counting_props(path):
            self.cards[str(path)] += 1
            return real_props(path)

        monkeypatch.setattr(rasterio, "open", counting_open)
        monkeypatch.setattr(onnx_io, "read_metadata_props", counting_props)

    def of(self, path: str) -> dict[str, int]:
        return {purpose: n for (p, purpose), n in self.rasters.items() if p == path}


@pytest.fixture
def s1_layers(data_dir) -> list[tuple[str, str]]:
    return [(variable(data_dir, f"S1-SIGMA0-{b}"), b) for b in BANDS[Modality.S1]]


def test_prediction_reads_card_and_each_header_once(monkeypatch, s1_layers, tmp_path):
    """The route Processing and the panel take: request -> session -> plan -> windows -> outputs."""
    opens = Opens(monkeypatch)
    request = PredictionRequest(model_path=str(CROP_S1), layers={Modality.S1: s1_layers},
                                output=str(tmp_path / "crop.tif"), confidence=str(tmp_path / "conf.tif"))
    result = run_prediction(request)
    assert opens.cards == {str(CROP_S1): 1}
    for source, _ in s1_layers:
        assert opens.of(source) == {"header": 1, "pixels": 1}, source
    assert result.card.name == "crop_type_europe_s1"
    assert result.pixels_predicted > 0
    # The confidence went where it was asked, published with the prediction, nothing else left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf.tif", "crop.tif"]
    with rasterio.open(tmp_path / "conf.tif") as ds:
        conf = ds.read(1)
    assert np.nanmin(conf) > 0 and np.nanmax(conf) <= 1 + 1e-6


def test_processing_reads_the_card_once(plugin, monkeypatch, s1_layers, tmp_path):
    opens = Opens(monkeypatch)
    results = processing.run("eomissing:predict", {
        "MODEL": str(CROP_S1), "S1": [source for source, _ in s1_layers],
        "OUTPUT": str(tmp_path / "crop.tif"), "CONFIDENCE": str(tmp_path / "conf.tif")})
    assert results["MODEL_NAME"] == "crop_type_europe_s1"
    assert opens.cards == {str(CROP_S1): 1}
    for source, _ in s1_layers:
        assert opens.of(source) == {"header": 1, "pixels": 1}, source


def test_whole_cube_lists_its_variables_once_and_reads_only_what_it_uses(monkeypatch, data_dir, tmp_path):
    """A netCDF file given whole: listed once, every variable's header once, pixels of the used ones."""
    opens = Opens(monkeypatch)
    result = run_model(str(CROP_S1), [RasterInput(cube_path(data_dir))], tmp_path / "crop.tif")
    assert opens.cards == {str(CROP_S1): 1}
    assert opens.of(cube_path(data_dir)) == {"subdatasets": 1}
    used = {variable(data_dir, f"S1-SIGMA0-{b}") for b in BANDS[Modality.S1]}
    headers = [p for (p, purpose) in opens.rasters if purpose == "header"]
    assert len(headers) == len(set(headers)) > len(used)  # every variable once, S2 and weather too
    for (path, purpose), n in opens.rasters.items():
        if purpose == "pixels" and not path.endswith(".partial.tif"):  # outputs are read back once
            assert path in used and n == 1, path
    assert result.pixels_predicted > 0


def test_confidence_destination_is_checked_before_anything_is_written(data_dir, tmp_path):
    """All outputs are one set: a confidence that cannot be written means no prediction either."""
    with pytest.raises(OutputError, match="does not exist"):
        run_model(str(CROP_S1), [RasterInput(cube_path(data_dir))], tmp_path / "crop.tif",
                  options=RunOptions(confidence=str(tmp_path / "absent" / "conf.tif")))
    with pytest.raises(OutputError, match="same file"):
        run_model(str(CROP_S1), [RasterInput(cube_path(data_dir))], tmp_path / "crop.tif",
                  options=RunOptions(confidence=str(tmp_path / "crop.tif")))
    assert list(tmp_path.iterdir()) == []
