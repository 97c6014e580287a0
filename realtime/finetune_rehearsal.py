"""A rehearsal file (``stream --finetune-rehearsal``) from a replay dataset's training session.

The starting model of a subject was trained on its earlier session; a replay dataset keeps
that session as its training responses (``train/``).  :func:`rehearsal_from_dataset` writes
them, with their images' embeddings by the model's embedder, in the format of
:mod:`mindeye_models.finetune_rehearsal`, so that fine-tuning between runs can rehearse them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_base.errors import ConfigError


def rehearsal_from_dataset(
    dataset,
    checkpoint: str | Path,
    path: str | Path,
    *,
    clip_weights: str | None = None,
    cache_dir: str | None = None,
    dtype=np.float32,
    log=None,
) -> Path:
    """Write ``path`` from ``dataset``'s training responses (every trial, in order) and their
    images embedded by ``checkpoint``'s embedder.  ``dataset``: a name, path or ReplayDataset."""
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import read_sidecar
    from mindeye_models.embedder import load_embedder
    from mindeye_models.finetune_rehearsal import write_rehearsal
    from replay_data.dataset_reader import ReplayDataset

    ds = dataset if isinstance(dataset, ReplayDataset) else ReplayDataset.open(dataset)
    if not ds.has_training:
        raise ConfigError(
            f"dataset {ds.meta.name!r} has no training session ('train/') to rehearse"
        )
    sidecar = read_sidecar(checkpoint)
    n_voxels = sidecar.get("config", {}).get("n_voxels")
    if n_voxels is not None and int(n_voxels) != int(ds.meta.n_voxels):
        raise ConfigError(
            f"the model takes {n_voxels} voxels; dataset {ds.meta.name!r} has "
            f"{ds.meta.n_voxels}: give the subject the model was made for"
        )
    name = sidecar.get("extra", {}).get("embedder", "tiny-random")
    voxels, ids = ds.training_responses()
    unique = np.unique(ids)
    embedder = load_embedder(name, weights=clip_weights)
    bank = ImageBank.build(ds.stimuli()[unique], unique, embedder, cache_dir=cache_dir)
    out = write_rehearsal(path, voxels, ids, bank, name, dtype=dtype)
    if log is not None:
        log(
            f"rehearsal file {out}: {len(ids)} trials of {ds.meta.name!r}'s training session, "
            f"{len(unique)} images ({out.stat().st_size / 1e6:.1f} MB)"
        )
    return out
