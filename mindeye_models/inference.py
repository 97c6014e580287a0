"""Running a trained MindEye: predictions in batches and retrieval accuracy against a bank."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.model import MindEye
from mindeye_models.ranks import true_ranks
from rt_base.errors import ConfigError


def rows(array: Any, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 tensor of the rows ``idx`` of a numpy array (memmap too) or tensor."""
    if isinstance(array, torch.Tensor):
        return array[torch.from_numpy(idx)].to(device, torch.float32)
    return torch.from_numpy(np.asarray(array[idx], dtype=np.float32)).to(device)


@torch.no_grad()
def predict(
    model: MindEye, voxels: Any, *, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``voxels`` (N, V) in batches.

    Returns
    -------
    backbone, projected : (N, T, D) float32 CPU tensors.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs_b, outs_p = [], []
    for i in range(0, len(voxels), batch_size):
        b, p = model(rows(voxels, np.arange(i, min(i + batch_size, len(voxels))), device))
        outs_b.append(b.float().cpu())
        outs_p.append(p.float().cpu())
    model.train(was_training)
    if not outs_b:
        empty = torch.zeros(0, *model.config.token_shape)
        return empty, empty.clone()
    return torch.cat(outs_b), torch.cat(outs_p)


@torch.no_grad()
def evaluate_retrieval(
    model: MindEye,
    voxels: np.ndarray,
    image_ids: np.ndarray,
    bank: ImageBank,
    *,
    subset: np.ndarray | None = None,
) -> dict[str, float]:
    """Image retrieval accuracy: is the viewed image the bank's nearest (top-1) or among the
    five nearest (top-5) to the predicted tokens?

    Parameters
    ----------
    model : MindEye
    voxels : (N, V) responses.
    image_ids : (N,) id of the image seen on each trial (must be in the bank).
    bank : ImageBank of candidate images.
    subset : optional ids restricting the candidates.

    Returns
    -------
    dict with ``top1``, ``top5`` (fractions), ``ways`` (number of candidates), ``n`` (trials).
    """
    image_ids = np.asarray(image_ids).reshape(-1)
    if len(image_ids) != len(voxels):
        raise ConfigError(
            f"'image_ids' must have one id per trial ({len(voxels)}), got {len(image_ids)}"
        )
    ways = len(bank) if subset is None else len(np.unique(subset))
    _, proj = predict(model, voxels)
    ids, _ = bank.retrieve(proj, k=min(5, ways), subset=subset)
    ranks = true_ranks(ids, image_ids)  # 0: outside the top 5
    return {
        "top1": float(np.mean(ranks == 1)) if len(ranks) else float("nan"),
        "top5": float(np.mean(ranks > 0)) if len(ranks) else float("nan"),
        "ways": int(ways),
        "n": int(len(ranks)),
    }
