"""Image resizing shared by the autoencoders, the generator and the session's metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize image batches to ``size`` x ``size`` (bilinear, antialiased); unchanged if already.

    Parameters
    ----------
    x : (N, C, H, W) float tensor
        A non-square image is stretched (the stimuli and reconstructions are square).
    size : int
        Side in pixels.

    Returns
    -------
    (N, C, size, size) float tensor (``x`` itself when it has that size).
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
