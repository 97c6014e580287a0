"""The minibatch loop shared by the small networks trained on first use.

The tiny autoencoder, the low-level head and the diffusion prior are each fitted with the same
loop: every epoch a seeded random order of the rows, batches of that order, one optimizer step
per batch.  :func:`fit_epochs` is that loop; it shows a progress bar with the last epoch's
mean loss, so no first-use training phase runs silently.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from rt_base.checks import check_number


def fit_epochs(
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n_rows: int,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    desc: str = "train",
    progress: bool = False,
) -> list[float]:
    """Run ``epochs`` passes of minibatch training over ``n_rows`` rows.

    Parameters
    ----------
    loss_of : called with a (b,) int64 tensor of row indices; returns the batch's scalar loss
        (mean over the batch).
    n_rows : number of training rows.
    optimizer : steps once per batch, after ``zero_grad`` and ``backward``.
    epochs, batch_size : passes over the rows and rows per batch (the last batch may be short).
    generator : draws each epoch's row order (seeded by the caller, so a run is reproducible).
    scheduler : stepped after every optimizer step, if given.
    desc : label of the progress bar.
    progress : show a progress bar (epochs, with the last epoch's mean loss).

    Returns
    -------
    Per-epoch mean loss (weighted by batch size).
    """
    epochs = check_number(epochs, "epochs", minimum=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", minimum=1, integer=True)
    n_rows = check_number(n_rows, "n_rows", minimum=1, integer=True)
    history: list[float] = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
    for _ in bar:
        order = torch.randperm(n_rows, generator=generator)
        total = 0.0
        for i in range(0, n_rows, batch_size):
            idx = order[i : i + batch_size]
            loss = loss_of(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(idx)
        history.append(total / n_rows)
        bar.set_postfix(loss=f"{history[-1]:.4g}")
    return history
