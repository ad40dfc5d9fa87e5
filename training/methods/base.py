"""What every method shares: the task loss on standardised targets, the optimiser, validation on
the inference path only, and the exportable :class:`~training.models.Predictor`."""

from __future__ import annotations

import lightning as L  # noqa: N812 - the usual Lightning alias
import torch
from torch import nn

from eo_missing_qgis.core.definitions import Task

from ..models import Predictor, TempCNN
from .losses import task_loss


class EncoderHead(nn.Module):
    """TempCNN over the concatenated bands of ``modalities`` + a linear head (single, teacher, KD).

    ``encoders`` > 1 adds encoders over the same input whose embeddings are concatenated before
    the head: the capacity-matched control for the two-encoder guided students.
    """

    def __init__(
        self,
        modalities: tuple[str, ...],
        channels: dict[str, int],
        steps: int,
        n_outputs: int,
        net: dict,
        encoders: int = 1,
    ):
        super().__init__()
        self.modalities = tuple(modalities)
        width = sum(channels[m] for m in self.modalities)
        self.encoder = TempCNN(width, steps, **net)
        self.extra = nn.ModuleList(TempCNN(width, steps, **net) for _ in range(encoders - 1))
        self.head = nn.Linear(self.encoder.filters * encoders, n_outputs)

    def features(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = torch.cat([inputs[m] for m in self.modalities], dim=2)
        levels = self.encoder(x)
        embeds = [self.encoder.embed(levels[-1]), *(e.embed(e(x)[-1]) for e in self.extra)]
        return levels, torch.cat(embeds, dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(inputs)[1])


def mark_teacher(module: nn.Module) -> nn.Module:
    """Flag a guide network so that export refuses any graph that contains it."""
    for sub in module.modules():
        sub.teacher_part = True
    return module


class MethodModule(L.LightningModule):
    """Base LightningModule; subclasses define :meth:`training_loss` and :meth:`inference_core`.

    ``modalities`` are the inputs of the exported student. Regression targets are standardised
    with ``target_mean``/``target_std`` (training split statistics) inside the losses; the
    exported predictor undoes it, so its output is in physical units.
    """

    method = ""
    #: Whether :func:`training.run.fit` must hand it a pre-trained teacher (``load_teacher``).
    needs_teacher = False

    @classmethod
    def wants_teacher(cls, **method_args) -> bool:
        """``needs_teacher`` of an instance built with ``method_args`` (known before training)."""
        return cls.needs_teacher

    def __init__(
        self,
        *,
        task: str,
        n_outputs: int,
        steps: int,
        channels: dict[str, int],
        modalities: list[str],
        net: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        **method_args,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.modalities = tuple(modalities)
        self.net_args = dict(net or {})

    # -- to implement ---------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def inference_core(self) -> nn.Module:
        """The student: a module mapping {modality: (batch, time, bands)} to raw outputs."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        y = batch["y"]
        if self.task == Task.CLASSIFICATION:
            return y
        return (y.float() - self.hparams.target_mean) / self.hparams.target_std

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return task_loss(output, self.target(batch), self.task)

    def training_step(self, batch, batch_idx):
        loss, parts = self.training_loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["y"]))
        for key, value in parts.items():
            self.log(f"train_{key}", value, on_step=False, on_epoch=True, batch_size=len(batch["y"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self.loss(self.inference_core()(batch), batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=len(batch["y"]))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def predictor(self) -> Predictor:
        return Predictor(
            self.inference_core(),
            self.modalities,
            self.task,
            self.hparams.target_mean,
            self.hparams.target_std,
        )
