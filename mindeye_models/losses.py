"""MindEye contrastive objectives: MixCo voxel mixup, BiMixCo and SoftCLIP.

All losses compare predictions with targets as flattened, L2-normalised token embeddings:
``(B, T, D) -> (B, T * D)`` unit vectors; cosine similarities divided by a temperature are the
logits.  MindEye1 trains with BiMixCo (temperature 0.006) for the first third of the epochs and
then SoftCLIP, whose temperature is cosine-annealed from 0.004 to 0.0075.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rt_base.checks import check_number


def flat_normalize(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, F) rows of unit L2 norm."""
    return F.normalize(x.reshape(len(x), -1).float(), dim=-1)


def mixco(
    voxels: torch.Tensor,
    *,
    beta: float = 0.15,
    select_frac: float = 0.5,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MixCo voxel mixup: blend a random fraction of samples with a permuted partner.

    Parameters
    ----------
    voxels : (B, V) tensor (not modified).
    beta : both parameters of the Beta distribution of the mixing weights (0.15 in MindEye).
    select_frac : probability that a sample is mixed (0.5 in MindEye).
    rng : random generator (for reproducibility); None uses a fresh unseeded one.

    Returns
    -------
    mixed : (B, V) tensor, ``w * voxels + (1 - w) * voxels[perm]`` for the selected rows.
    perm : (B,) long tensor, the partner of each row.
    weights : (B,) tensor, ``w`` (1 for rows that were not mixed).
    """
    check_number(beta, "beta", minimum=0, strict_min=True)
    check_number(select_frac, "select_frac", minimum=0, maximum=1)
    rng = np.random.default_rng() if rng is None else rng
    b = voxels.shape[0]
    perm = rng.permutation(b)
    w = rng.beta(beta, beta, size=b)
    w[rng.random(b) >= select_frac] = 1.0
    perm_t = torch.from_numpy(perm).to(voxels.device)
    weights = torch.from_numpy(w).to(voxels.device, voxels.dtype)
    mixed = voxels * weights[:, None] + voxels[perm_t] * (1 - weights[:, None])
    return mixed, perm_t, weights


def mixco_nce(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 0.006,
    perm: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    bidirectional: bool = True,
) -> torch.Tensor:
    """(Bi)MixCo InfoNCE with soft targets.

    Row ``i`` of the prediction came from ``w_i * x_i + (1 - w_i) * x_perm[i]``, so its target
    distribution puts ``w_i`` on image ``i`` and ``1 - w_i`` on image ``perm[i]``.  Without
    ``perm``/``weights`` this is the plain (bidirectional) CLIP loss.

    Parameters
    ----------
    preds : (B, T, D) or (B, F) predicted embeddings (normalised here).
    targets : (B, T, D) or (B, F) target embeddings (normalised here).
    temperature : logit temperature.
    perm, weights : (B,) from :func:`mixco`.
    bidirectional : average the brain->image and image->brain losses.

    Returns
    -------
    loss : scalar tensor.
    """
    p, t = flat_normalize(preds), flat_normalize(targets)
    logits = p @ t.T / temperature
    b = len(p)
    idx = torch.arange(b, device=p.device)
    if perm is None or weights is None:
        probs = torch.eye(b, device=p.device)
    else:
        w = weights.to(p.device, p.dtype)
        probs = torch.diag(w)
        probs[idx, perm.to(p.device)] += 1 - w  # += keeps rows summing to 1 when perm[i] == i
    loss = -(logits.log_softmax(-1) * probs).sum(-1).mean()
    if bidirectional:
        loss2 = -(logits.T.log_softmax(-1) * probs.T).sum(-1).mean()
        loss = (loss + loss2) / 2
    return loss


def soft_clip_loss(
    preds: torch.Tensor, targets: torch.Tensor, *, temperature: float = 0.0075
) -> torch.Tensor:
    """SoftCLIP: cross-entropy against soft labels from target-target similarities.

    Parameters
    ----------
    preds : (B, T, D) or (B, F) predicted embeddings (normalised here).
    targets : (B, T, D) or (B, F) target embeddings (normalised here).
    temperature : temperature of both the logits and the soft labels.

    Returns
    -------
    loss : scalar tensor, the mean of both directions.
    """
    p, t = flat_normalize(preds), flat_normalize(targets)
    labels = (t @ t.T / temperature).softmax(-1)
    logits = p @ t.T / temperature
    loss1 = -(logits.log_softmax(-1) * labels).sum(-1).mean()
    loss2 = -(logits.T.log_softmax(-1) * labels).sum(-1).mean()
    return (loss1 + loss2) / 2


def cosine_anneal(start: float, end: float, steps: int) -> list[float]:
    """``steps`` values going from ``start`` to ``end`` along half a cosine."""
    if steps <= 1:
        return [float(end)] * max(steps, 0)
    return [
        end + (start - end) / 2 * (1 + math.cos(math.pi * i / (steps - 1))) for i in range(steps)
    ]
