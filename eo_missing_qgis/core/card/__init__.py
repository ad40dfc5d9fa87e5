"""The model card, split by job: data model (:mod:`.model`), parser and validator (:mod:`.parse`),
ONNX metadata I/O (:mod:`.onnx_io`) and human-readable report (:mod:`.report`)."""

from .model import (
    CARD_KEY,
    SCHEMA_VERSION,
    Band,
    ClassInfo,
    ContextSpec,
    InputSpec,
    ModelCard,
    ModelCardError,
    OutputSpec,
    Provenance,
    Region,
    TimeSpec,
)
from .onnx_io import deepness_metadata, embed_card, read_card, read_metadata_props
from .parse import card_from_dict, card_from_json
from .report import card_to_html, card_to_text

__all__ = [
    "CARD_KEY",
    "SCHEMA_VERSION",
    "Band",
    "ClassInfo",
    "ContextSpec",
    "InputSpec",
    "ModelCard",
    "ModelCardError",
    "OutputSpec",
    "Provenance",
    "Region",
    "TimeSpec",
    "card_from_dict",
    "card_from_json",
    "card_to_html",
    "card_to_text",
    "deepness_metadata",
    "embed_card",
    "read_card",
    "read_metadata_props",
]
