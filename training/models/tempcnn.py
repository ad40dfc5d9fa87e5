"""TempCNN-style temporal encoder (Pelletier et al. 2019): 1-D conv blocks over the time axis."""

from __future__ import annotations

import torch
from torch import nn

from eo_missing_qgis.core.definitions import Task


class ConvBlock(nn.Sequential):
    """Conv1d (same padding) -> BatchNorm -> ReLU -> Dropout on (batch, channels, time)."""

    def __init__(self, in_channels: int, filters: int, kernel: int, dropout: float):
        super().__init__(
            nn.Conv1d(in_channels, filters, kernel, padding=kernel // 2),
            nn.BatchNorm1d(filters),
            nn.ReLU(),
            nn.Dropout(dropout),
        )


class TempCNN(nn.Module):
    """Input (batch, time, channels) in the card's NTC layout.

    ``forward`` returns the feature sequence after every block, (batch, filters, time) each, so
    methods can fuse or distil at several depths; :meth:`embed` turns the last one into the
    TempCNN's flatten + dense embedding of size ``filters``. A ``static`` vector per sample (the
    location) is repeated at every time step as extra channels.
    """

    def __init__(
        self,
        in_channels: int,
        steps: int,
        filters: int = 128,
        layers: int = 2,
        kernel: int = 5,
        dropout: float = 0.2,
        static: int = 0,
    ):
        super().__init__()
        in_channels += static
        self.out_steps = steps
        self.blocks = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else filters, filters, kernel, dropout) for i in range(layers)
        )
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(filters * steps, filters),
            nn.BatchNorm1d(filters),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.filters = filters

    def forward(self, x: torch.Tensor, static: torch.Tensor | None = None) -> list[torch.Tensor]:
        if static is not None:
            x = torch.cat([x, static.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)
        h = x.transpose(1, 2)
        levels = []
        for block in self.blocks:
            h = block(h)
            levels.append(h)
        return levels

    def embed(self, last: torch.Tensor) -> torch.Tensor:
        return self.dense(last)


class Predictor(nn.Module):
    """An exportable model: one tensor per modality (batch, time, bands), already standardised,
    then the context tensors, in the card's order; ``names`` are their batch keys.

    Wraps a method's inference path (``core``) and turns its raw output into what the card
    promises: softmax probabilities, or the regression value in physical units.
    """

    def __init__(
        self,
        core: nn.Module,
        names: tuple[str, ...],
        task: str,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ):
        super().__init__()
        self.core = core
        self.names = tuple(names)
        self.task = task
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        raw = self.core(dict(zip(self.names, inputs, strict=True)))
        if self.task == Task.CLASSIFICATION:
            return torch.softmax(raw, dim=1)
        return raw * self.target_std + self.target_mean

