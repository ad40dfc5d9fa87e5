"""``single``: the student architecture trained alone on its modalities (the baseline; with
``encoders: 2`` the capacity-matched control for the two-encoder guided students);
``teacher``: the same network on all four modality groups (upper reference and guide).
With ``mixup`` > 0, ``single`` is the mixup control of a distilling student (:mod:`training.transfer`)."""

from __future__ import annotations

from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES

from ..transfer import MIXED_TARGET, pool_rows
from .base import EncoderHead, MethodModule
from .losses import as_logits, output_distillation


class SingleModule(MethodModule):
    method = "single"

    def __init__(self, encoders: int = 1, **kwargs):
        if encoders < 1:
            raise ValueError(f"encoders must be 1 or more, not {encoders}")
        super().__init__(encoders=encoders, **kwargs)
        h = self.hparams
        self.model = EncoderHead(
            self.modalities, h.channels, h.steps, h.n_outputs, self.net_args, encoders, self.context
        )

    def training_loss(self, batch):
        """The task loss; with a mixed pool (``mixup``) plus the loss on the pool rows' mixed
        labels (mixup's target, learnt as a distilling student learns its teacher's output)."""
        out = self.model(batch)
        rows = pool_rows(batch)
        if rows is None:
            return self.loss(out, batch), {}
        mixed = as_logits(batch[MIXED_TARGET][rows], self.task)
        parts = {
            "task": self.labelled_loss(out, batch),
            "mixed": output_distillation(out[rows], mixed, self.task, 1.0),
        }
        return parts["task"] + parts["mixed"], parts

    def inference_core(self) -> nn.Module:
        return self.model


class TeacherModule(SingleModule):
    method = "teacher"
    time_flexible = False

    def __init__(self, **kwargs):
        kwargs["modalities"] = list(MODALITIES)
        super().__init__(**kwargs)
