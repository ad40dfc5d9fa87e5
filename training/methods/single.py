"""``single``: the student architecture trained alone on its modalities (the baseline; with
``encoders: 2`` the capacity-matched control for the two-encoder guided students);
``teacher``: the same network on all four modality groups (upper reference and guide)."""

from __future__ import annotations

from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES

from .base import EncoderHead, MethodModule


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
        return self.loss(self.model(batch), batch), {}

    def inference_core(self) -> nn.Module:
        return self.model


class TeacherModule(SingleModule):
    method = "teacher"
    time_flexible = False

    def __init__(self, **kwargs):
        kwargs["modalities"] = list(MODALITIES)
        super().__init__(**kwargs)
