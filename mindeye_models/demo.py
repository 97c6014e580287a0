"""A MindEye model for a replay dataset, trained on first use and cached.

The checkpoint's name carries a key over everything that determines it: the dataset's name, a
fingerprint of its training responses, trial image ids and training images, the preset, the
embedder's identity and the training options.  A second call with the same inputs finds it and
returns at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindeye_models.bank import ImageBank, images_hash
from mindeye_models.checkpoint import read_sidecar, save_checkpoint
from mindeye_models.embedder import ImageEmbedder, load_embedder
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from mindeye_models.train import TrainConfig, evaluate_retrieval, train_mindeye
from rt_base.checks import check_number
from rt_base.errors import ConfigError, WeightsError

#: Training options per preset (the paper's recipe; shorter and with larger batches on CPU).
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "mindeye1-subj01": TrainConfig(),
    "demo": TrainConfig(epochs=30, batch_size=64),
    "tiny": TrainConfig(epochs=10, batch_size=32),
}


def train_config_for(preset: str, epochs: int | None = None) -> TrainConfig:
    """The training options of ``preset``, with ``epochs`` replaced when given."""
    cfg = TRAIN_PRESETS.get(preset, TrainConfig())
    if epochs is not None:
        cfg = replace(cfg, epochs=check_number(epochs, "epochs", minimum=1, integer=True))
    return cfg


def data_fingerprint(responses: np.ndarray, image_ids: np.ndarray, images_key: str) -> str:
    """Short sha256 of training responses, their image ids and the images' hash."""
    h = hashlib.sha256(f"{responses.shape}|{responses.dtype}|{images_key}".encode())
    h.update(np.ascontiguousarray(image_ids, dtype=np.int64).tobytes())
    for i in range(0, len(responses), 512):
        h.update(np.ascontiguousarray(responses[i : i + 512]).tobytes())
    return h.hexdigest()[:16]


def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached(path: Path, expect: dict[str, Any]) -> bool:
    """Is there a checkpoint at ``path`` whose sidecar records exactly ``expect``?"""
    try:
        extra = read_sidecar(path).get("extra", {})
    except WeightsError:
        return False
    return all(extra.get(k) == v for k, v in expect.items())


def ensure_demo_model(
    dataset: Any,
    *,
    models_dir: str | Path,
    preset: str = "demo",
    embedder: ImageEmbedder | str | None = None,
    epochs: int | None = None,
    progress: bool = True,
    force: bool = False,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    joint_prior: bool = False,
    vae: str | Path | None = None,
    recon_config: Any = None,
) -> Path:
    """Path of a MindEye checkpoint trained on ``dataset``; trains and saves one if needed.

    Parameters
    ----------
    dataset : a :class:`replay_data.dataset.ReplayDataset` (uses ``.meta.name``,
        ``.meta.n_voxels``, ``.training_responses()``, ``.stimuli()``).
    models_dir : folder of cached checkpoints.
    preset : model preset (see :mod:`mindeye_models.presets`).
    embedder : ImageEmbedder or embedder name; None uses the preset's (``tiny-random`` for
        ``demo``).  The model's token shape follows the embedder.
    epochs : training epochs; None for the preset's (:data:`TRAIN_PRESETS`).
    progress : show progress bars.
    force : retrain even if a matching checkpoint exists.
    out : checkpoint path; None picks a name in ``models_dir`` keyed by the inputs.
    cache_dir : folder of cached image banks; None uses ``models_dir / "cache"``.
    log : called with one-line status messages.
    joint_prior : train a diffusion prior with the backbone (MindEye's recipe, its loss
        weighted ``prior_mult``) and save it with the reconstruction models of the checkpoint
        (:func:`mindeye_models.recon.ensure_recon_models`, which also trains the low-level
        parts, with ``vae`` when given, and ``recon_config``, a
        :class:`~mindeye_models.recon.ReconTrainConfig`).

    Returns
    -------
    Path of the ``.safetensors`` weights (the JSON sidecar lies next to it).
    """
    log = log or (lambda _msg: None)
    models_dir = Path(models_dir)
    name = str(dataset.meta.name)
    config = get_preset(preset, n_voxels=int(dataset.meta.n_voxels))
    if embedder is None or isinstance(embedder, str):
        embedder = load_embedder(embedder or config.embedder)
    emb_name = embedder.config.name
    if (emb_name, embedder.token_shape) != (config.embedder, config.token_shape):
        n_tokens, clip_dim = embedder.token_shape
        config = replace(config, embedder=emb_name, n_tokens=n_tokens, clip_dim=clip_dim)
    train_cfg = train_config_for(preset, epochs)

    responses, image_ids = dataset.training_responses()
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(responses) < 2:
        raise ConfigError(
            f"dataset {name!r} has {len(responses)} training trials; training needs at least 2: "
            "make a dataset with training runs"
        )
    stimuli = dataset.stimuli()
    train_ids = np.unique(image_ids)
    train_images = np.asarray(stimuli[train_ids])
    fingerprint = data_fingerprint(responses, image_ids, images_hash(train_images, train_ids))
    expect = {
        "dataset": name,
        "data_fingerprint": fingerprint,
        "preset": preset,
        "embedder": emb_name,
        "embedder_identity": embedder.identity,
        "train_config": asdict(train_cfg),
    }
    if joint_prior:
        expect["joint_prior"] = True
    key = _key(expect, config.to_dict())
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = Path(out) if out is not None else models_dir / f"{preset}-{safe}-{key}.safetensors"
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if not force and _cached(path, expect):
        log(f"using the cached MindEye model {path}")
        return path

    log(
        f"training MindEye ({preset}, {config.n_voxels} voxels, {emb_name} targets) on "
        f"{len(responses)} trials of {name!r} for {train_cfg.epochs} epochs"
    )
    start = time.perf_counter()
    bank_dir = models_dir / "cache" if cache_dir is None else Path(cache_dir)
    bank = ImageBank.build(train_images, train_ids, embedder, cache_dir=bank_dir)
    targets = bank.lookup(image_ids)
    prior = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = MindEye(config)
        if joint_prior:
            from mindeye_models.prior import DiffusionPrior, get_prior_preset
            from mindeye_models.recon import prior_preset_for

            prior = DiffusionPrior(get_prior_preset(prior_preset_for(config.token_shape)))
    history = train_mindeye(model, responses, targets, train_cfg, progress=progress, prior=prior)
    fit = evaluate_retrieval(model, responses, image_ids, bank)
    seconds = time.perf_counter() - start
    extra = {
        **expect,
        "n_voxels": config.n_voxels,
        "n_trials": len(responses),
        "n_images": len(train_ids),
        "train_seconds": round(seconds, 1),
        "final_loss": history["loss"][-1],
        "train_retrieval": fit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_checkpoint(model, path, extra)
    log(
        f"trained in {seconds:.0f} s; training-set retrieval top-1 {fit['top1']:.2f} of "
        f"{fit['ways']} images; saved {path}"
    )
    if prior is not None:
        from mindeye_models.recon import ensure_recon_models

        ensure_recon_models(
            dataset,
            path,
            models_dir=models_dir,
            config=recon_config,
            vae=vae,
            cache_dir=bank_dir,
            prior=prior,
            progress=progress,
            log=log,
        )
    return path
