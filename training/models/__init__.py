"""Network building blocks."""

from .encoders import ARCHS, build_encoder
from .inputs import NetInput, check_context, context_specs, mask_tensor
from .mlp import TimeMLP
from .tempcnn import ConvBlock, Predictor, TempCNN

__all__ = [
    "ARCHS", "ConvBlock", "NetInput", "Predictor", "TempCNN", "TimeMLP", "build_encoder", "check_context",
    "context_specs", "mask_tensor",
]
