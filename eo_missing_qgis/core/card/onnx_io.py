"""A card inside an ONNX file: ``metadata_props`` read straight from the protobuf (no onnx, no
onnxruntime needed) and written into a ``ModelProto``, with the keys the Deepness plugin reads."""

from __future__ import annotations

import json
from pathlib import Path

from ..definitions import Task
from .model import CARD_KEY, ModelCard, ModelCardError
from .parse import card_from_json


def read_metadata_props(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read straight from its protobuf encoding.

    Needs neither ``onnx`` nor ``onnxruntime``, and does not build a session, so a card can be
    shown even where the runtime is missing.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ModelCardError("<file>", f"cannot read {path}: {exc.strerror or exc}") from None
    props: dict[str, str] = {}
    try:
        for number, value in _fields(blob):
            if number == 14 and isinstance(value, memoryview):  # ModelProto.metadata_props
                entry = dict(_fields(value))
                key, val = entry.get(1, b""), entry.get(2, b"")
                props[bytes(key).decode("utf-8")] = bytes(val).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelCardError("<file>", f"{path} is not an ONNX model ({exc})") from None
    return props


def _fields(buf: bytes | memoryview):
    """Top-level (field number, value) pairs of a protobuf message."""
    view, pos, end = memoryview(buf), 0, len(buf)
    if end == 0:
        raise ValueError("empty file")
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(view, pos)
            value, pos = view[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, value


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise ValueError("truncated varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_card(path: str | Path) -> ModelCard:
    """The validated card of an ONNX file."""
    props = read_metadata_props(path)
    if CARD_KEY not in props:
        raise ModelCardError(
            f"metadata_props.{CARD_KEY}", f"is missing: {Path(path).name} carries no model card"
        )
    return card_from_json(props[CARD_KEY])


def embed_card(model, card: ModelCard) -> None:
    """Write ``card`` (and the Deepness keys) into an ``onnx.ModelProto``'s metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(deepness_metadata(card))
    props[CARD_KEY] = card.to_json()
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def deepness_metadata(card: ModelCard) -> dict[str, str]:
    """The keys the Deepness plugin reads, so the file is also legible there. Deepness reads
    every value with ``json.loads``, so the model type is a JSON string (``"Segmentor"``)."""
    out = {
        "model_type": json.dumps("Segmentor" if card.task == Task.CLASSIFICATION else "Regressor"),
        "tile_size": str(card.tile_size),
        "standardization_mean": json.dumps(
            [m for _ in range(card.time.steps) for i in card.inputs for m in i.mean]
        ),
        "standardization_std": json.dumps(
            [s for _ in range(card.time.steps) for i in card.inputs for s in i.std]
        ),
    }
    if card.task == Task.CLASSIFICATION:
        out["class_names"] = json.dumps(
            {str(k): c.name for k, c in enumerate(card.output.classes)}
        )
    return out
