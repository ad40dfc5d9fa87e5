"""``dis2``: DIS2-style distillation for a missing modality, transferred to time series.

The student has an encoder for the available modality and a *compensation* encoder (same input)
whose features stand in for the missing modalities. After every encoder block the two are fused
(1x1 conv on the concatenation, plus the previous level's fused features: hierarchical fusion
across blocks of growing temporal receptive field). An online full-modality teacher (initialised
from the pre-trained teacher when given, trained alongside with its own task loss) guides the
student with stop-gradient: at each level MSE between normalised time-pooled fused and teacher
features, and on the outputs temperature-scaled KL (classification) or MSE (regression), weighted
by a ramp after a warm-up. Squared-cosine orthogonality keeps compensation and available
features apart; deep supervision puts a task head on each intermediate level. Classification uses
class-wise attention (one learnable query per class) over the fused sequence before the head.
Inference uses the two encoders, the fusion and the head only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES, Task

from ..models import TempCNN
from .base import EncoderHead, MethodModule, mark_teacher
from .losses import feature_distillation, orthogonality, output_distillation, ramp


class ClassAttentionHead(nn.Module):
    """One learnable query per class attends over time; class k's logit reads its own summary."""

    def __init__(self, width: int, n_classes: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_classes, width) / math.sqrt(width))
        self.key = nn.Linear(width, width)
        self.weight = nn.Parameter(torch.randn(n_classes, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        h = seq.transpose(1, 2)  # (batch, time, width)
        scores = torch.einsum("kf,btf->bkt", self.queries, self.key(h)) / math.sqrt(h.shape[-1])
        summary = torch.einsum("bkt,btf->bkf", torch.softmax(scores, dim=-1), h)
        return (summary * self.weight).sum(-1) + self.bias


class DIS2Student(nn.Module):
    def __init__(
        self, modalities: tuple[str, ...], channels: int, steps: int, n_outputs: int, task: str, net: dict
    ):
        super().__init__()
        self.modalities = modalities
        self.available = TempCNN(channels, steps, **net)
        self.compensation = TempCNN(channels, steps, **net)
        width = self.available.filters
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv1d(2 * width, width, 1), nn.BatchNorm1d(width), nn.ReLU())
            for _ in self.available.blocks
        )
        self.head = (
            ClassAttentionHead(width, n_outputs)
            if task == Task.CLASSIFICATION
            else nn.Sequential(
                nn.Flatten(), nn.Linear(width * steps, width), nn.ReLU(), nn.Linear(width, n_outputs)
            )
        )

    def levels(self, inputs: dict[str, torch.Tensor]):
        """Available, compensation and fused feature sequences per level, and the output."""
        x = torch.cat([inputs[m] for m in self.modalities], dim=2)
        avail, comp = self.available(x), self.compensation(x)
        fused, previous = [], 0.0
        for a, c, fuse in zip(avail, comp, self.fuse, strict=True):
            previous = fuse(torch.cat([a, c], dim=1)) + previous
            fused.append(previous)
        return avail, comp, fused, self.head(fused[-1])

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.levels(inputs)[-1]


class DIS2Module(MethodModule):
    method = "dis2"

    def __init__(
        self,
        temperature: float = 2.0,
        warmup_epochs: int = 3,
        ramp_epochs: int = 5,
        distill_weight: float = 1.0,
        orthogonality_weight: float = 1.0,
        deep_weight: float = 0.5,
        **kwargs,
    ):
        super().__init__(
            temperature=temperature,
            warmup_epochs=warmup_epochs,
            ramp_epochs=ramp_epochs,
            distill_weight=distill_weight,
            orthogonality_weight=orthogonality_weight,
            deep_weight=deep_weight,
            **kwargs,
        )
        h = self.hparams
        self.student = DIS2Student(
            self.modalities,
            sum(h.channels[m] for m in self.modalities),
            h.steps,
            h.n_outputs,
            self.task,
            self.net_args,
        )
        self.teacher = mark_teacher(EncoderHead(MODALITIES, h.channels, h.steps, h.n_outputs, self.net_args))
        width = self.student.available.filters
        self.deep_heads = nn.ModuleList(nn.Linear(width, h.n_outputs) for _ in self.student.fuse[:-1])

    def load_teacher(self, state: dict[str, torch.Tensor]) -> None:
        self.teacher.load_state_dict(state)

    def training_loss(self, batch):
        h = self.hparams
        avail, comp, fused, out = self.student.levels(batch)
        t_levels, t_emb = self.teacher.features(batch)
        t_out = self.teacher.head(t_emb)
        weight = h.distill_weight * ramp(self.current_epoch, h.warmup_epochs, h.ramp_epochs)
        parts = {
            "task": self.loss(out, batch),
            "teacher": self.loss(t_out, batch),
            "distill": sum(
                feature_distillation(f.mean(-1), t.mean(-1)) for f, t in zip(fused, t_levels, strict=True)
            )
            + output_distillation(out, t_out, self.task, h.temperature),
            "orthogonality": sum(
                orthogonality(a.mean(-1), c.mean(-1)) for a, c in zip(avail, comp, strict=True)
            ),
            "deep": sum(
                (self.loss(head(f.mean(-1)), batch) for head, f in zip(self.deep_heads, fused, strict=False)),
                torch.zeros((), device=out.device),
            ),
        }
        total = (
            parts["task"]
            + parts["teacher"]
            + weight * parts["distill"]
            + h.orthogonality_weight * parts["orthogonality"]
            + h.deep_weight * parts["deep"]
        )
        return total, parts

    def inference_core(self) -> nn.Module:
        return self.student
