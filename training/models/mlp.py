"""Time-as-channels MLP: the whole (time x channels) series of a pixel is one flat vector, so the
exported graph is a few Gemm/MatMul nodes that ONNX Runtime runs near its dense-algebra speed
(issue 13), unlike 1-D convolutions over 12 steps."""

from __future__ import annotations

import torch
from torch import nn


class TimeMLP(nn.Module):
    """Input (batch, time, channels) and an optional (batch, static) vector, flattened and joined;
    ``layers`` blocks Linear -> BatchNorm -> ReLU -> Dropout of width ``filters``.

    Same interface as :class:`.TempCNN`: ``forward`` returns every block's output as a sequence of
    one step, (batch, filters, 1), and :meth:`embed` the last as the (batch, filters) embedding, so
    every method (kd hints, MDiCo halves, DIS2 level fusion) builds on it unchanged.
    """

    out_steps = 1

    def __init__(
        self, in_channels: int, steps: int, filters: int = 256, layers: int = 2, dropout: float = 0.2,
        static: int = 0,
    ):
        super().__init__()
        width = in_channels * steps + static
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(width if i == 0 else filters, filters),
                nn.BatchNorm1d(filters),
                nn.ReLU(),
                nn.Dropout(dropout),
            )
            for i in range(layers)
        )
        self.filters = filters

    def forward(self, x: torch.Tensor, static: torch.Tensor | None = None) -> list[torch.Tensor]:
        h = x.flatten(1)
        if static is not None:
            h = torch.cat([h, static], dim=1)
        levels = []
        for block in self.blocks:
            h = block(h)
            levels.append(h.unsqueeze(-1))
        return levels

    def embed(self, last: torch.Tensor) -> torch.Tensor:
        return last.flatten(1)
