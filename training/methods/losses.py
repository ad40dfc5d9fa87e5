"""Loss terms of the guided methods, each a pure function with a known answer (unit-tested)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from eo_missing_qgis.core.definitions import Task


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric NT-Xent between two views (batch, dim): row i of ``a`` and of ``b`` are positives,
    every other row of the other view a negative (SimCLR / MDiCo cross-modal contrast)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def orthogonality(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine similarity of paired rows: 0 when every pair is orthogonal."""
    return F.cosine_similarity(a, b, dim=1, eps=1e-8).pow(2).mean()


def feature_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between L2-normalised features; the teacher side carries no gradient."""
    return F.mse_loss(F.normalize(student, dim=1), F.normalize(teacher.detach(), dim=1))


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Hinton's temperature-scaled KL(teacher || student), times T² to keep gradient scale."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits / t, dim=1),
            F.log_softmax(teacher_logits.detach() / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def output_distillation(
    student: torch.Tensor, teacher: torch.Tensor, task: str, temperature: float = 2.0
) -> torch.Tensor:
    """Soft targets for classification, MSE to the teacher's (normalised) value for regression."""
    if task == Task.CLASSIFICATION:
        return soft_target_kl(student, teacher, temperature)
    return F.mse_loss(student, teacher.detach())


def as_logits(target: torch.Tensor, task: str) -> torch.Tensor:
    """A stored soft target as :func:`output_distillation` takes it: probabilities as
    log-probabilities (tempered like logits, since softmax(log p / T) is p^(1/T) renormalised),
    a standardised regression value as it is."""
    target = target.float()
    return torch.log(target.clamp_min(1e-6)) if task == Task.CLASSIFICATION else target


def task_loss(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy on class indices, or MSE on the standardised regression target (batch, 1)."""
    if task == Task.CLASSIFICATION:
        return F.cross_entropy(output, target)
    return F.mse_loss(output, target.view(-1, 1))


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with class weights inversely proportional to the class counts in the batch
    (classes absent from the batch weigh nothing), so rare classes count as much as common ones."""
    counts = torch.bincount(target, minlength=logits.shape[1]).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    return F.cross_entropy(logits, target, weight=weights)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch, from softmax probabilities."""
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, logits.shape[1]).float()
    present = onehot.sum(0) > 0
    dice = (2 * (probs * onehot).sum(0) + eps) / (probs.sum(0) + onehot.sum(0) + eps)
    return 1 - dice[present].mean()


def ramp(epoch: int, warmup: int, length: int) -> float:
    """0 during ``warmup`` epochs, then linear to 1 over ``length`` epochs."""
    if epoch < warmup:
        return 0.0
    return min(1.0, (epoch - warmup + 1) / max(1, length))
