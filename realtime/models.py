"""Glue between the realtime stages and ``mindeye_models``: load a decoder and its bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_decoder(
    checkpoint: str | Path,
    dataset: str | Path,
    bank_ids: list[int],
    *,
    device: str = "cpu",
    clip_weights: str | None = None,
    cache_dir: str | Path | None = None,
):
    """Load a MindEye checkpoint and build the image bank of ``bank_ids`` from the dataset.

    Returns
    -------
    model : MindEye in eval mode on ``device``.
    bank : ImageBank whose embeddings come from the embedder the model was trained against,
        searching on ``device`` (:meth:`~mindeye_models.bank.ImageBank.search_on`).
    """
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import load_checkpoint
    from mindeye_models.embedder import load_embedder
    from replay_data.dataset_reader import ReplayDataset

    model, extra = load_checkpoint(checkpoint, device=device)
    model.eval()
    embedder = load_embedder(
        extra.get("embedder", "tiny-random"), weights=clip_weights, device=device
    )
    ds = ReplayDataset.open(dataset)
    ids = np.asarray(sorted(set(int(i) for i in bank_ids)), dtype=np.int64)
    images = ds.stimuli()[ids]
    bank = ImageBank.build(images, ids, embedder, cache_dir=cache_dir)
    return model, bank.search_on(device)
