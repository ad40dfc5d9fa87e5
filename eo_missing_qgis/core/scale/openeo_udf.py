"""openEO UDF: a carded ONNX model on one neighbourhood of a data cube, via ``predict_block``.

This file is sent whole as the UDF of ``apply_neighborhood`` (see :mod:`.openeo_graph`), so it
uses absolute imports and no ``from __future__ import annotations`` (openEO finds
``apply_datacube`` by its annotations). The backend must be able to import ``eo_missing_qgis``
and ``onnxruntime``: a job option ``udf-dependency-archives`` ``["<zip URL>#eo_missing_deps"]``
unpacks a zip of them into :data:`DEPENDENCY_DIR`, which this file puts on ``sys.path``.

Context: ``model`` (a path readable by the backend, or an https URL, downloaded once per worker),
optional ``encodings`` ({modality: encoding preset name}, e.g. ``{"S1": "linear power"}``) and
``probabilities`` (also return one band per class). The cube is (t, bands, y, x) with one label
per month, oldest first; the result keeps a ``t`` of one label (openEO's apply_neighborhood may
not drop a dimension) and has the bands named by :func:`eo_missing_qgis.core.block.output_names`.
Overlap pixels are returned as computed; the backend trims them.
"""

import hashlib
import logging
import sys
import tempfile
import urllib.request
from pathlib import Path

import xarray
from openeo.udf import XarrayDataCube

#: Where a backend unpacks the job's dependency archive (relative to the UDF's working folder).
DEPENDENCY_DIR = "eo_missing_deps"
if Path(DEPENDENCY_DIR).is_dir() and DEPENDENCY_DIR not in sys.path:
    sys.path.insert(0, DEPENDENCY_DIR)

from eo_missing_qgis.core.block import output_names, predict_block  # noqa: E402
from eo_missing_qgis.core.errors import InputError  # noqa: E402
from eo_missing_qgis.core.scale.common import block_inputs, cached_session  # noqa: E402


def model_file(model: str) -> str:
    """A local path for ``model``: itself, or an https URL downloaded once into the temp folder."""
    if not model.startswith(("http://", "https://")):
        return model
    if not model.startswith("https://"):
        raise InputError(f"model URL {model} must use https")
    target = Path(tempfile.gettempdir()) / "eo_missing_models" / (
        hashlib.sha256(model.encode()).hexdigest()[:16] + ".onnx")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        # https only (checked above), so no file:// or custom scheme reaches urlretrieve.
        urllib.request.urlretrieve(model, partial)  # nosec B310
        partial.replace(target)
    return str(target)


def predict_cube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """The model's maps over ``cube`` (t, bands, y, x) as (t: 1, bands, y, x) float32."""
    if "model" not in context:
        raise InputError("the UDF context needs 'model': a model path or https URL")
    session = cached_session(model_file(str(context["model"])), context.get("device", "cpu"),
                             context.get("threads"))
    card = session.card
    probabilities = bool(context.get("probabilities", False))
    arrays, encodings = block_inputs(cube, card, context.get("encodings"))
    out = predict_block(arrays, card, session, encodings=encodings, probabilities=probabilities)
    for msg in out.warnings:  # in the job's log
        logging.getLogger(__name__).warning(msg)
    tdim = "t" if "t" in cube.dims else "time"
    coords = {tdim: cube[tdim].values[:1], "bands": output_names(card, probabilities),
              "y": cube["y"].values, "x": cube["x"].values}
    return xarray.DataArray(out.stacked()[None], dims=(tdim, "bands", "y", "x"), coords=coords)


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    """openEO's entry point: see the module docstring."""
    return XarrayDataCube(predict_cube(cube.get_array(), context or {}))
