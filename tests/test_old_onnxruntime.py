"""The bundled models on the oldest supported ONNX Runtime, installed from the package registry into
a throwaway venv: they load through the plugin's own session code and give the current runtime's
outputs on real held-out samples."""

from __future__ import annotations

import os
import subprocess  # nosec B404 - runs python/pip of a venv this test made
import venv

import numpy as np

from eo_missing_qgis.core.card import read_card
from eo_missing_qgis.core.model_index import MODELS_DIR
from eo_missing_qgis.core.runtime_version import OLDEST_SUPPORTED
from tests.conftest import ROOT
from tests.tolerances import RUNTIME_RTOL
from training.datasets import load_dataset
from training.export import onnx_feeds, onnx_predict
from training.run import split_data

OLDEST = "1.15.1"  # the last patch release of OLDEST_SUPPORTED
SAMPLES = 256

RUN = """
import sys
import numpy as np
import onnxruntime
from eo_missing_qgis.core.session import open_session
print(onnxruntime.__version__)
for path in sys.argv[2:]:
    feeds = dict(np.load(path + ".in.npz"))
    session = open_session(sys.argv[1] + "/" + path.rsplit("/", 1)[-1] + ".onnx", device="cpu")
    np.save(path + ".out.npy", session.run(feeds)[0])
"""


def _old_runtime(folder) -> str:
    """python of a fresh venv with onnxruntime OLDEST and numpy < 2, from the package registry."""
    venv.create(folder, with_pip=True)
    python = str(folder / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",  # nosec B603
                    f"onnxruntime=={OLDEST}", "numpy==1.26.4"], check=True, timeout=600)
    return python


def test_bundled_models_match_on_the_oldest_supported_onnxruntime(tmp_path, data_dir):
    assert tuple(int(x) for x in OLDEST.split(".")[:2]) == OLDEST_SUPPORTED
    python = _old_runtime(tmp_path / "venv")
    prepared, expected, stems = {}, {}, []
    for path in sorted(MODELS_DIR.glob("*.onnx")):
        card = read_card(path)
        key = (card.provenance.dataset, card.provenance.seed)
        if key not in prepared:
            prepared[key] = split_data(load_dataset(key[0], data_dir), key[1])
        arrays = {m: a[:SAMPLES] for m, a in prepared[key].arrays["test"].items()}
        stem = str(tmp_path / path.stem)
        np.savez(stem + ".in.npz", **onnx_feeds(card, arrays))  # sensor and context tensors
        expected[stem] = onnx_predict(path, card, arrays)
        stems.append(stem)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([python, "-c", RUN, str(MODELS_DIR), *stems],  # nosec B603
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == OLDEST
    for stem, want in expected.items():
        got = np.load(stem + ".out.npy")
        assert got.shape == want.shape and want.shape[0] == min(SAMPLES, len(want))
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=RUNTIME_RTOL, atol=RUNTIME_RTOL * scale, err_msg=stem)


def test_oldest_supported_is_documented():
    readme = (ROOT / "README.md").read_text()
    assert f"onnxruntime {OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]}" in readme
