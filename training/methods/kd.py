"""``kd``: knowledge distillation from the frozen full-modality teacher (Hinton et al. 2015) with
feature hints (FitNets-style, on normalised embeddings of equal width)."""

from __future__ import annotations

import torch
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES

from .base import EncoderHead, MethodModule, full, load_guide, mark_teacher
from .losses import feature_distillation, output_distillation


class KDModule(MethodModule):
    method = "kd"
    needs_teacher = True

    def __init__(self, temperature: float = 2.0, kd_weight: float = 1.0, hint_weight: float = 1.0, **kwargs):
        super().__init__(temperature=temperature, kd_weight=kd_weight, hint_weight=hint_weight, **kwargs)
        h = self.hparams
        self.model = EncoderHead(self.modalities, h.channels, h.steps, h.n_outputs, self.net_args,
                                 context=self.context)
        self.teacher = mark_teacher(EncoderHead(MODALITIES, h.channels, h.steps, h.n_outputs, self.net_args,
                                                context=self.context))
        self.teacher.requires_grad_(False)

    def load_teacher(self, state: dict[str, torch.Tensor]) -> None:
        """Weights of a trained teacher (its ``model.`` entries)."""
        load_guide(self.teacher, state)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen: BatchNorm statistics and dropout stay in inference mode
        return self

    def training_loss(self, batch):
        h = self.hparams
        _, emb = self.model.features(batch)
        out = self.model.head(emb)
        with torch.no_grad():
            _, t_emb = self.teacher.features(full(batch))
            t_out = self.teacher.head(t_emb)
        parts = {
            "task": self.loss(out, batch),
            "soft": output_distillation(out, t_out, self.task, h.temperature),
            "hint": feature_distillation(emb, t_emb),
        }
        return parts["task"] + h.kd_weight * parts["soft"] + h.hint_weight * parts["hint"], parts

    def inference_core(self) -> nn.Module:
        return self.model
