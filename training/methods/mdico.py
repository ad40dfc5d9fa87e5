"""``mdico``: multi-modal disentangled co-learning (after MDiCo), transferred to TempCNN encoders.

Per modality group a *specific* and a *shared* encoder. The specific embedding is split into an
informative and an unused half; the shared embedding goes through a projection, one per
modality as in the authors' released code (``projection: per_modality``; ``shared`` uses one
projection common to all modalities). Each modality has its own head on [informative, shared];
one auxiliary head, shared across modalities, is applied to the informative and to the shared
parts; shared parts of different modalities of the same sample are pulled together with NT-Xent
(temperature 0.1); two modality-discriminative heads classify which modality a feature came from.

Loss weighting (``reduction``): the four terms have 4 (task), 8 (auxiliary), 8 (modality) and 6
(contrast, one per pair) members. ``mean`` (default) averages each term over its members and
weighs them task : auxiliary : modality : contrast = 1 : 1 : 1 : ``contrast_weight`` (12 by
default, the ratio of the released code); ``sum`` with ``contrast_weight: 1`` adds every member
with weight 1, i.e. 4 : 8 : 8 : 6 (the earlier variant, kept as its ablation row).

The paper's text applies the second modality head to the *unused* half; the authors' released
code applies it to the *shared* features. ``second_modality_head_on`` selects either.
At inference only the chosen modality's specific and shared encoders, the projection and its
head are used.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES

from ..models import NetInput, build_encoder
from .base import MethodModule
from .losses import info_nce


class MDiCoStudent(nn.Module):
    """Inference path of one modality: [informative specific half, projected shared] -> head."""

    def __init__(
        self,
        net_input: NetInput,
        specific: nn.Module,
        shared: nn.Module,
        projection: nn.Module,
        head: nn.Module,
    ):
        super().__init__()
        self.input = net_input
        self.specific, self.shared, self.projection, self.head = specific, shared, projection, head

    def parts(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(informative, unused, shared) embeddings of one modality's input (and its context)."""
        x, static = self.input(inputs)
        spec = self.specific.embed(self.specific(x, static)[-1])
        informative, unused = spec.chunk(2, dim=1)
        shared = self.projection(self.shared.embed(self.shared(x, static)[-1]))
        return informative, unused, shared

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        informative, _, shared = self.parts(inputs)
        return self.head(torch.cat([informative, shared], dim=1))


class MDiCoModule(MethodModule):
    method = "mdico"

    def __init__(
        self,
        temperature: float = 0.1,
        second_modality_head_on: str = "unused",
        projection: str = "per_modality",
        reduction: str = "mean",
        contrast_weight: float = 12.0,
        **kwargs,
    ):
        for name, value, allowed in (
            ("second_modality_head_on", second_modality_head_on, ("unused", "shared")),
            ("projection", projection, ("per_modality", "shared")),
            ("reduction", reduction, ("mean", "sum")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        super().__init__(
            temperature=temperature,
            second_modality_head_on=second_modality_head_on,
            projection=projection,
            reduction=reduction,
            contrast_weight=contrast_weight,
            **kwargs,
        )
        if len(self.modalities) != 1:
            raise ValueError(f"mdico predicts from one modality at a time, not {list(self.modalities)}")
        h = self.hparams
        width = self.net_args.get("filters", 128)
        if width % 2:
            raise ValueError(
                f"mdico splits the specific embedding in halves: filters must be even, not {width}"
            )
        half = width // 2

        self.inputs = {m: NetInput((m,), self.context) for m in MODALITIES}

        def encoder(m: str) -> nn.Module:
            width, static = self.inputs[m].widths(h.channels)
            return build_encoder(self.net_args, width, h.steps, static)

        self.specific = nn.ModuleDict({m: encoder(m) for m in MODALITIES})
        self.shared = nn.ModuleDict({m: encoder(m) for m in MODALITIES})
        if projection == "shared":
            common = nn.Linear(width, half)
            self.projection = nn.ModuleDict({m: common for m in MODALITIES})
        else:
            self.projection = nn.ModuleDict({m: nn.Linear(width, half) for m in MODALITIES})
        self.heads = nn.ModuleDict({m: nn.Linear(2 * half, h.n_outputs) for m in MODALITIES})
        self.aux_head = nn.Linear(half, h.n_outputs)
        self.modality_head = nn.Linear(half, len(MODALITIES))
        self.second_modality_head = nn.Linear(half, len(MODALITIES))

    def student(self, modality: str) -> MDiCoStudent:
        return MDiCoStudent(
            self.inputs[modality],
            self.specific[modality],
            self.shared[modality],
            self.projection[modality],
            self.heads[modality],
        )

    def training_loss(self, batch):
        terms = {"task": 0.0, "aux": 0.0, "modality": 0.0, "contrast": 0.0}
        shared_parts = []
        for k, m in enumerate(MODALITIES):
            informative, unused, shared = self.student(m).parts(batch)
            shared_parts.append(shared)
            terms["task"] = terms["task"] + self.loss(
                self.heads[m](torch.cat([informative, shared], 1)), batch
            )
            terms["aux"] = (
                terms["aux"]
                + self.loss(self.aux_head(informative), batch)
                + self.loss(self.aux_head(shared), batch)
            )
            label = torch.full((len(informative),), k, dtype=torch.long, device=informative.device)
            second = unused if self.hparams.second_modality_head_on == "unused" else shared
            terms["modality"] = (
                terms["modality"]
                + F.cross_entropy(self.modality_head(informative), label)
                + F.cross_entropy(self.second_modality_head(second), label)
            )
        pairs = list(combinations(shared_parts, 2))
        for a, b in pairs:
            terms["contrast"] = terms["contrast"] + info_nce(a, b, self.hparams.temperature)
        if self.hparams.reduction == "mean":
            members = {"task": len(MODALITIES), "aux": 2 * len(MODALITIES), "modality": 2 * len(MODALITIES)}
            terms = {k: v / members.get(k, len(pairs)) for k, v in terms.items()}
        total = (
            terms["task"]
            + terms["aux"]
            + terms["modality"]
            + self.hparams.contrast_weight * terms["contrast"]
        )
        return total, terms

    def inference_core(self) -> nn.Module:
        return self.student(self.modalities[0])
