"""What a network reads besides its sensor tensors: the context inputs of card schema 1.2, named
and encoded as the card declares them, and how they join the sensor values.

A run's ``context`` lists kinds (``mask``, ``month``, ``latlon``). Per time step, each modality's
values are followed by its availability mask (1 value) and the month (sin, cos); the location
(latitude / 90, sin and cos of the longitude) is per sample, a ``static`` vector the encoder
joins after the time axis (MLP) or repeats at every step (TempCNN).
"""

from __future__ import annotations

import torch

from eo_missing_qgis.core.card import ContextSpec
from eo_missing_qgis.core.definitions import CONTEXT_WIDTH, ContextEncoding, ContextKind

#: The encoding of each context kind in training and in the exported card.
ENCODINGS: dict[ContextKind, ContextEncoding] = {
    ContextKind.MASK: ContextEncoding.BINARY,
    ContextKind.MONTH: ContextEncoding.SIN_COS,
    ContextKind.LATLON: ContextEncoding.LAT_SIN_COS_LON,
}


def mask_tensor(modality: str) -> str:
    """The tensor (and batch key) of a modality's availability mask, e.g. ``mask_s2``."""
    return f"mask_{modality.lower()}"


def check_context(context: list[str]) -> list[str]:
    """``context`` as known kinds, each once, or a ValueError naming the allowed ones."""
    kinds = [str(k) for k in context]
    unknown = sorted(set(kinds) - {str(k) for k in ContextKind})
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"context must list each of {', '.join(ContextKind)} at most once, not {kinds}")
    return kinds


def context_specs(context: list[str], modalities: tuple[str, ...] | list[str]) -> tuple[ContextSpec, ...]:
    """The card's context inputs of a network over ``modalities``, in the graph's input order:
    one mask per modality, then month, then location."""
    out = []
    if ContextKind.MASK in context:
        encoding = ENCODINGS[ContextKind.MASK]
        out += [ContextSpec(ContextKind.MASK, mask_tensor(m), encoding, m) for m in modalities]
    out += [ContextSpec(ContextKind(k), str(k), ENCODINGS[ContextKind(k)])
            for k in (ContextKind.MONTH, ContextKind.LATLON) if k in context]
    return tuple(out)


class NetInput:
    """Joins the sensor tensors of ``modalities`` with the context of the run into (batch, time,
    channels) values and an optional (batch, static) vector."""

    def __init__(self, modalities: tuple[str, ...] | list[str], context: list[str] | tuple[str, ...] = ()):
        self.modalities = tuple(modalities)
        self.mask = ContextKind.MASK in context
        self.month = ContextKind.MONTH in context
        self.latlon = ContextKind.LATLON in context

    def widths(self, channels: dict[str, int]) -> tuple[int, int]:
        """(values per time step, static values per sample)."""
        per_step = sum(channels[m] for m in self.modalities)
        per_step += len(self.modalities) * self.mask
        per_step += CONTEXT_WIDTH[ENCODINGS[ContextKind.MONTH]] * self.month
        return per_step, CONTEXT_WIDTH[ENCODINGS[ContextKind.LATLON]] * self.latlon

    def __call__(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts = []
        for m in self.modalities:
            parts.append(inputs[m])
            if self.mask:
                parts.append(inputs[mask_tensor(m)].unsqueeze(-1))
        if self.month:
            parts.append(inputs[ContextKind.MONTH])
        return torch.cat(parts, dim=2), inputs[ContextKind.LATLON] if self.latlon else None
