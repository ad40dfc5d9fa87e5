"""Network building blocks."""

from .tempcnn import ConvBlock, Predictor, TempCNN

__all__ = ["ConvBlock", "Predictor", "TempCNN"]
