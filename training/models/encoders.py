"""The encoder a run's ``net`` names: TempCNN (default) or the time-as-channels MLP."""

from __future__ import annotations

from torch import nn

from .mlp import TimeMLP
from .tempcnn import TempCNN

#: Encoder architectures by ``net.arch`` (``tempcnn`` when a config does not say).
ARCHS: dict[str, type[nn.Module]] = {"tempcnn": TempCNN, "mlp": TimeMLP}


def build_encoder(net: dict, channels: int, steps: int, static: int = 0) -> nn.Module:
    """The encoder ``net`` describes (``arch`` plus its size keys) over ``channels`` values per
    step and ``static`` values per sample. Keys of the other architecture (an MLP has no
    ``kernel``) are ignored, so a dataset config's defaults combine with either."""
    args = dict(net)
    arch = args.pop("arch", "tempcnn")
    if arch not in ARCHS:
        raise ValueError(f"unknown net.arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch != "tempcnn":
        args.pop("kernel", None)
    return ARCHS[arch](channels, steps, static=static, **args)
