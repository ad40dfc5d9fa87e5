"""``kd``: knowledge distillation (Hinton et al. 2015) from a full-modality teacher.

``teacher=network`` (default) distils from the frozen live teacher network, with feature hints
(FitNets-style, on normalised embeddings of equal width). ``teacher=oof_rf | oof_network |
oof_ensemble`` distils from outputs stored per training sample by :mod:`training.teachers`
(out-of-fold: the teacher never saw the sample's site or cluster), which
:func:`training.run.fit` puts in the batch as ``teacher_out``; a stored output has no
embedding, so these teachers give no hint loss (``hint_weight`` is unused).

With ``mixup`` > 0 the batches also hold mixed pool rows (:mod:`training.transfer`): the soft
loss covers them (the teacher's output on the mixed input), the task loss only the labelled rows.
"""

from __future__ import annotations

import torch
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES

from .base import EncoderHead, MethodModule, full, load_guide, mark_teacher
from .losses import as_logits, feature_distillation, output_distillation

#: Teachers ``kd`` distils from: the live network, or stored out-of-fold outputs of a kind.
TEACHERS = ("network", "oof_rf", "oof_network", "oof_ensemble")
#: Batch key of a stored teacher's output: probabilities, or the standardised regression value.
TEACHER_OUT = "teacher_out"
_STORED = "oof_"


def stored_teacher_kind(method_args: dict) -> str | None:
    """The :mod:`training.teachers` kind a method distils from, or None for a live teacher."""
    teacher = method_args.get("teacher", "network")
    if teacher not in TEACHERS:
        raise ValueError(f"unknown kd teacher {teacher!r}; choose one of {', '.join(TEACHERS)}")
    return teacher.removeprefix(_STORED) if teacher.startswith(_STORED) else None


class KDModule(MethodModule):
    method = "kd"
    needs_teacher = True

    @classmethod
    def wants_teacher(cls, **method_args) -> bool:
        return stored_teacher_kind(method_args) is None

    def __init__(
        self,
        temperature: float = 2.0,
        kd_weight: float = 1.0,
        hint_weight: float = 1.0,
        teacher: str = "network",
        folds: int = 5,
        **kwargs,
    ):
        super().__init__(
            temperature=temperature,
            kd_weight=kd_weight,
            hint_weight=hint_weight,
            teacher=teacher,
            folds=folds,
            **kwargs,
        )
        h = self.hparams
        self.needs_teacher = self.wants_teacher(teacher=teacher)
        self.model = EncoderHead(
            self.modalities, h.channels, h.steps, h.n_outputs, self.net_args, context=self.context
        )
        if self.needs_teacher:
            self.teacher = mark_teacher(
                EncoderHead(MODALITIES, h.channels, h.steps, h.n_outputs, self.net_args, context=self.context)
            )
            self.teacher.requires_grad_(False)

    def load_teacher(self, state: dict[str, torch.Tensor]) -> None:
        """Weights of a trained teacher (its ``model.`` entries)."""
        load_guide(self.teacher, state)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.needs_teacher:
            self.teacher.eval()  # frozen: BatchNorm statistics and dropout stay in inference mode
        return self

    def stored_logits(self, batch) -> torch.Tensor:
        """The stored teacher output as the soft loss takes it (:func:`as_logits`)."""
        if TEACHER_OUT not in batch:
            raise ValueError(
                f"kd with teacher={self.hparams.teacher} needs the stored teacher outputs in the batch "
                f"({TEACHER_OUT!r}); training.run.fit adds them to the training split"
            )
        return as_logits(batch[TEACHER_OUT], self.task)

    def training_loss(self, batch):
        h = self.hparams
        _, emb = self.model.features(batch)
        out = self.model.head(emb)
        parts = {"task": self.labelled_loss(out, batch)}
        if self.needs_teacher:
            with torch.no_grad():
                _, t_emb = self.teacher.features(full(batch))
                t_out = self.teacher.head(t_emb)
            parts["hint"] = feature_distillation(emb, t_emb)
        else:
            t_out = self.stored_logits(batch)
        parts["soft"] = output_distillation(out, t_out, self.task, h.temperature)
        loss = parts["task"] + h.kd_weight * parts["soft"]
        return (loss + h.hint_weight * parts["hint"] if "hint" in parts else loss), parts

    def inference_core(self) -> nn.Module:
        return self.model
