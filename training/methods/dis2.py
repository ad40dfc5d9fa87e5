"""``dis2``: DIS2-style distillation for a missing modality, transferred to time series.

The student has an *available* encoder for the available modality and a *compensation* encoder
(same input) whose features stand in for the missing modalities. After every encoder block the
two are fused (1x1 conv on the concatenation, plus the previous level's fused features:
hierarchical fusion across blocks of growing temporal receptive field).

The full-modality branch (``shared_encoder: true``, the default, as in DIS2) reuses the
student's available encoder and adds a *missing-modality* encoder over the other modality
groups, fused the same way, with its own head; it is trained online with its own task loss, and
the available encoder is also supervised on its own (a linear head on its time-pooled last
level). The student is guided with stop-gradient: at each level MSE between the normalised
time-pooled fused features of student and full branch, and on the outputs temperature-scaled KL
(classification) or MSE (regression), weighted by a ramp after a warm-up. Squared-cosine
orthogonality keeps compensation and available features apart; deep supervision puts a task
head on each intermediate fused level. Classification uses class-wise attention (one learnable
query per class) over the fused sequence, and every supervised classification output uses
DIS2's class-weighted cross-entropy + Dice (``dice: true``; regression uses MSE).

``shared_encoder: false`` and ``dice: false`` give the earlier variant (its ablation row): a
separate all-modality teacher network initialised from the pre-trained teacher and trained
alongside, plain cross-entropy. Inference uses the two student encoders, the fusion and the head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES, Task

from ..models import NetInput, build_encoder
from .base import EncoderHead, MethodModule, full, load_guide, mark_teacher
from .losses import (
    dice_loss,
    feature_distillation,
    orthogonality,
    output_distillation,
    ramp,
    weighted_cross_entropy,
)


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


def _head(width: int, steps: int, n_outputs: int, task: str) -> nn.Module:
    if task == Task.CLASSIFICATION:
        return ClassAttentionHead(width, n_outputs)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(width * steps, width), nn.ReLU(), nn.Linear(width, n_outputs)
    )


def _fusions(width: int, levels: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.Sequential(nn.Conv1d(2 * width, width, 1), nn.BatchNorm1d(width), nn.ReLU()) for _ in range(levels)
    )


def fuse_levels(a: list[torch.Tensor], b: list[torch.Tensor], fusions: nn.ModuleList) -> list[torch.Tensor]:
    """Hierarchical fusion: level k fuses ``a[k]`` and ``b[k]`` and adds level k-1's result."""
    fused, previous = [], 0.0
    for x, y, fuse in zip(a, b, fusions, strict=True):
        previous = fuse(torch.cat([x, y], dim=1)) + previous
        fused.append(previous)
    return fused


class DIS2Student(nn.Module):
    def __init__(
        self, net_input: NetInput, channels: dict[str, int], steps: int, n_outputs: int, task: str, net: dict
    ):
        super().__init__()
        self.input = net_input
        width, static = net_input.widths(channels)
        self.available = build_encoder(net, width, steps, static)
        self.compensation = build_encoder(net, width, steps, static)
        self.fuse = _fusions(self.available.filters, len(self.available.blocks))
        self.head = _head(self.available.filters, self.available.out_steps, n_outputs, task)

    def levels(self, inputs: dict[str, torch.Tensor]):
        """Available, compensation and fused feature sequences per level, and the output."""
        x, static = self.input(inputs)
        avail, comp = self.available(x, static), self.compensation(x, static)
        fused = fuse_levels(avail, comp, self.fuse)
        return avail, comp, fused, self.head(fused[-1])

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.levels(inputs)[-1]


class DIS2Module(MethodModule):
    method = "dis2"

    @classmethod
    def wants_teacher(cls, **method_args) -> bool:
        return not method_args.get("shared_encoder", True)

    def __init__(
        self,
        temperature: float = 2.0,
        warmup_epochs: int = 3,
        ramp_epochs: int = 5,
        distill_weight: float = 1.0,
        orthogonality_weight: float = 1.0,
        deep_weight: float = 0.5,
        shared_encoder: bool = True,
        dice: bool = True,
        **kwargs,
    ):
        super().__init__(
            temperature=temperature,
            warmup_epochs=warmup_epochs,
            ramp_epochs=ramp_epochs,
            distill_weight=distill_weight,
            orthogonality_weight=orthogonality_weight,
            deep_weight=deep_weight,
            shared_encoder=shared_encoder,
            dice=dice,
            **kwargs,
        )
        self.needs_teacher = self.wants_teacher(shared_encoder=shared_encoder)
        h = self.hparams
        self.student = DIS2Student(
            NetInput(self.modalities, self.context),
            h.channels,
            h.steps,
            h.n_outputs,
            self.task,
            self.net_args,
        )
        width = self.student.available.filters
        self.deep_heads = nn.ModuleList(nn.Linear(width, h.n_outputs) for _ in self.student.fuse[:-1])
        if shared_encoder:
            missing = [m for m in MODALITIES if m not in self.modalities]
            self.missing_input = NetInput(missing, self.context)
            m_width, m_static = self.missing_input.widths(h.channels)
            self.missing = mark_teacher(build_encoder(self.net_args, m_width, h.steps, m_static))
            self.full_fuse = mark_teacher(_fusions(width, len(self.student.fuse)))
            out_steps = self.student.available.out_steps
            self.full_head = mark_teacher(_head(width, out_steps, h.n_outputs, self.task))
            self.available_head = nn.Linear(width, h.n_outputs)
        else:
            self.teacher = mark_teacher(
                EncoderHead(MODALITIES, h.channels, h.steps, h.n_outputs, self.net_args, context=self.context)
            )

    def load_teacher(self, state: dict[str, torch.Tensor]) -> None:
        load_guide(self.teacher, state)

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """DIS2's class-weighted cross-entropy + Dice for classification (with ``dice``)."""
        if self.task == Task.CLASSIFICATION and self.hparams.dice:
            y = self.target(batch)
            return weighted_cross_entropy(output, y) + dice_loss(output, y)
        return super().loss(output, batch)

    def full_branch(self, batch, avail: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Guide features per level and guide output, with the shared encoder or the teacher."""
        if not self.hparams.shared_encoder:
            t_levels, t_emb = self.teacher.features(full(batch))
            return t_levels, self.teacher.head(t_emb)
        missing = self.missing(*self.missing_input(full(batch)))
        fused = fuse_levels(avail, missing, self.full_fuse)
        return fused, self.full_head(fused[-1])

    def training_loss(self, batch):
        h = self.hparams
        avail, comp, fused, out = self.student.levels(batch)
        t_levels, t_out = self.full_branch(batch, avail)
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
        if h.shared_encoder:
            parts["available"] = self.loss(self.available_head(avail[-1].mean(-1)), batch)
        total = (
            parts["task"]
            + parts["teacher"]
            + parts.get("available", 0.0)
            + weight * parts["distill"]
            + h.orthogonality_weight * parts["orthogonality"]
            + h.deep_weight * parts["deep"]
        )
        return total, parts

    def inference_core(self) -> nn.Module:
        return self.student
