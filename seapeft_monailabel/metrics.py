"""Dice scores: the soft Dice the search's audits use, and the hard Dice the evaluation reports (used by every layer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sums soft Dice is made of, so that batches (or ranks) can be pooled by adding them.

    Args:
        logits: ``(N, K, D, H, W)`` network output, ``K`` classes with background at 0.
        labels: ``(N, 1, D, H, W)`` integer labels in ``0..K-1``.

    Returns:
        ``(3, K - 1)`` float64, per foreground class: ``sum(p_c y_c)``, ``sum(p_c) + sum(y_c)``, ``sum(y_c)``
        (``p = softmax(logits)``); :func:`dice_from_sums` turns them into the soft Dice.
    """
    n_classes = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(labels[:, 0].long(), n_classes).movedim(-1, 1).float()
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)[1:]
    truth = onehot.sum(dims)[1:]
    denom = probs.sum(dims)[1:] + truth
    return torch.stack([inter, denom, truth]).double()


def dice_from_sums(sums: torch.Tensor, eps: float = 1e-5) -> float:
    """Mean over the present foreground classes of ``(2 sum(p y) + eps) / (sum(p) + sum(y) + eps)``."""
    inter, denom, truth = sums
    present = truth > 0
    if not present.any():
        raise ValueError("soft_dice: the labels hold no foreground")
    return float(((2 * inter + eps) / (denom + eps))[present].mean())


def soft_dice(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> float:
    """Soft Dice of the foreground classes, pooled over a batch of patches.

    Args:
        logits: ``(N, K, D, H, W)`` network output, ``K`` classes with background at 0.
        labels: ``(N, 1, D, H, W)`` integer labels in ``0..K-1``.

    Returns:
        The mean over the foreground classes present in ``labels`` of
        ``2 sum(p_c y_c) / (sum(p_c) + sum(y_c))``, sums taken over all patches at once (so a patch
        without a class does not count as a failure). ``p = softmax(logits)``. In ``[0, 1]``.
    """
    return dice_from_sums(soft_dice_sums(logits, labels), eps)


def dice_per_class(prediction: torch.Tensor, label: torch.Tensor, n_classes: int) -> list[float]:
    """Hard Dice ``2 TP / (|P| + |G|)`` per foreground class.

    Args:
        prediction: ``(D, H, W)`` integer class map.
        label: ``(D, H, W)`` integer ground truth.
        n_classes: ``K`` including background.

    Returns:
        ``K - 1`` values; a class absent from both prediction and ground truth scores 1.0, absent from
        one of them 0.0.
    """
    scores = []
    for c in range(1, n_classes):
        p, g = prediction == c, label == c
        denom = int(p.sum()) + int(g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return scores
