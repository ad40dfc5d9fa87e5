"""What every method shares: the task loss on standardised targets, the optimiser, validation on
the inference path only, and the exportable :class:`~training.models.Predictor`."""

from __future__ import annotations

import lightning as L  # noqa: N812 - the usual Lightning alias
import torch
from torch import nn

from eo_missing_qgis.core.definitions import MODALITIES, Modality, Task

from ..models import NetInput, Predictor, build_encoder, context_specs, mask_tensor
from ..transfer import pool_rows
from .losses import task_loss

#: Modalities whose steps time-step dropout thins: the DEM is one static layer, never missing by date.
TIME_SERIES = tuple(m for m in MODALITIES if m != Modality.DEM)


class EncoderHead(nn.Module):
    """The ``net`` encoder over the bands of ``modalities`` and the run's ``context`` + a linear
    head (single, teacher, KD).

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
        context: list[str] | tuple[str, ...] = (),
    ):
        super().__init__()
        self.modalities = tuple(modalities)
        self.input = NetInput(self.modalities, context)
        width, static = self.input.widths(channels)
        self.encoder = build_encoder(net, width, steps, static)
        self.extra = nn.ModuleList(build_encoder(net, width, steps, static) for _ in range(encoders - 1))
        self.head = nn.Linear(self.encoder.filters * encoders, n_outputs)

    def features(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, static = self.input(inputs)
        levels = self.encoder(x, static)
        embeds = [self.encoder.embed(levels[-1]), *(e.embed(e(x, static)[-1]) for e in self.extra)]
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

    ``modalities`` are the inputs of the exported student; ``context`` the context kinds every
    network of the method reads (:mod:`training.models.inputs`). Regression targets are
    standardised with ``target_mean``/``target_std`` (training split statistics) inside the
    losses; the exported predictor undoes it, so its output is in physical units.

    ``time_dropout`` > 0 thins the students' training inputs (:meth:`thin`); guides read the
    full series from ``batch["full"]`` (:func:`full`).
    """

    method = ""
    #: Whether ``time_dropout`` applies (False for the teacher, which always sees the full series).
    time_flexible = True
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
        context: list[str] | None = None,
        time_dropout: float = 0.0,
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
        self.context = tuple(context or ())
        if not 0.0 <= time_dropout <= 1.0:
            raise ValueError(f"time_dropout is a probability (0-1), not {time_dropout}")

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

    def labelled_loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task loss over the labelled rows of a batch that may hold mixed pool rows
        (:mod:`training.transfer`); 0 for a batch of pool rows only."""
        rows = pool_rows(batch)
        if rows is None:
            return self.loss(output, batch)
        if rows.all():
            return output.sum() * 0.0
        return self.loss(output[~rows], {"y": batch["y"][~rows]})

    def thin(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The students' view of a training batch: with probability ``time_dropout`` a sample
        keeps one step, loses a contiguous gap, or keeps a random subset (one of the three, each
        keeping 1 step at least); its dropped steps become missing in every time-series
        modality, value 0 (what ``standardize`` fills for NaN) and mask 0. The unthinned batch
        stays under ``"full"`` for the guides. Random numbers from torch's generator, seeded by
        Lightning's ``seed_everything``."""
        p = self.hparams.time_dropout if self.time_flexible else 0.0
        if p <= 0:
            return batch
        keep = keep_steps(len(batch["y"]), self.hparams.steps, p, batch["y"].device)
        out = dict(batch, full=batch)
        for m in TIME_SERIES:
            if m in batch:
                out[m] = batch[m] * keep.unsqueeze(-1)
            if mask_tensor(m) in batch:
                out[mask_tensor(m)] = batch[mask_tensor(m)] * keep
        return out

    def training_step(self, batch, batch_idx):
        loss, parts = self.training_loss(self.thin(batch))
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
            (*self.modalities, *(c.tensor for c in context_specs(list(self.context), self.modalities))),
            self.task,
            self.hparams.target_mean,
            self.hparams.target_std,
        )


def load_guide(guide: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """A trained teacher's weights into a method's copy of the teacher, or a plain reason why
    they do not fit (a teacher of another net or context than the student's)."""
    try:
        guide.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError("the teacher's weights do not fit this student's teacher network: train the teacher "
                         "with the student's net (arch, filters, layers) and context") from err


def full(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The unthinned batch a guide (teacher, full-modality branch) reads: every step of every
    modality, whatever time-step dropout removed from the student's view."""
    return batch.get("full", batch)


def keep_steps(n: int, steps: int, p: float, device: torch.device | None = None) -> torch.Tensor:
    """(n, steps) float 0/1: which steps each sample keeps. A sample is thinned with probability
    ``p``, then by one of: a single step, a contiguous gap (at most all but one step), a random
    subset (each step kept with probability 1/2; the single step's pick if none is)."""
    thinned = torch.rand(n, device=device) < p
    mode = torch.randint(0, 3, (n,), device=device)
    t = torch.arange(steps, device=device).expand(n, steps)
    pick = torch.randint(0, steps, (n, 1), device=device)
    single = t == pick
    length = torch.randint(1, max(steps, 2), (n, 1), device=device).clamp(max=steps - 1)
    start = (torch.rand(n, 1, device=device) * (steps - length + 1)).floor().long()
    gap = ~((t >= start) & (t < start + length))
    draw = torch.rand(n, steps, device=device) < 0.5
    subset = draw | (single & ~draw.any(1, keepdim=True))
    chosen = torch.where(mode[:, None] == 0, single, torch.where(mode[:, None] == 1, gap, subset))
    return (chosen | ~thinned[:, None]).float()
