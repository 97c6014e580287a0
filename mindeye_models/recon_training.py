"""First-use training of a checkpoint's reconstruction models, part by part, with held-out figures.

:func:`ensure_recon_models` returns the path of the checkpoint's reconstruction bundle
(:mod:`mindeye_models.recon_bundle`) and trains only the parts the session needs that the cached
bundle lacks:

* ``lowlevel`` (every mode): the autoencoder -- a tiny one trained on the stimulus images, or a
  local diffusers VAE (``vae=``) -- and the low-level head, voxels -> its latents;
* ``prior`` (``full`` mode only, ``with_prior=True``): the diffusion prior, trained on the frozen
  backbone's tokens of the training trials against the embedder's tokens of their images
  (MindEye's "after" variant), or the prior trained jointly with the backbone
  (``mindeye-rt train --prior joint``, see :func:`mindeye_models.model_cache.ensure_model`).

A ``lowlevel`` session therefore never waits for the prior; a later ``full`` session adds it to
the same bundle without retraining the low-level part.  The bundle's file name carries a key over
the checkpoint's bytes, the training data, the low-level recipe and the VAE; each part records
the recipe it was trained with, and a part whose recipe changed is retrained.  A share of the
training trials (``val_fraction``) is held out for the figures each part records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindeye_models.autoencoders import encode_rows, load_autoencoder, train_autoencoder
from mindeye_models.checkpoint import read_sidecar
from mindeye_models.lowlevel import LowLevelConfig, LowLevelHead, train_lowlevel_head
from mindeye_models.metrics import shuffled_baseline
from mindeye_models.model_cache import data_fingerprint
from mindeye_models.prior import PRIOR_PRESETS
from mindeye_models.prior_training import evaluate_prior, prior_recipe, train_prior_part
from mindeye_models.recon_bundle import (
    BUNDLE_VERSION,
    PARTS,
    ReconBundle,
    load_bundle,
    read_bundle_sidecar,
)
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError, WeightsError
from rt_base.hashing import cache_key, file_sha256

_LOWLEVEL_FIELDS = ("ae_steps", "head_epochs", "head_hidden", "val_fraction", "seed")
_PRIOR_FIELDS = ("prior_preset", "prior_epochs", "prior_batch", "prior_lr", "val_fraction", "seed")


@dataclass(frozen=True)
class ReconTrainConfig:
    """How the reconstruction models are trained.

    Parameters
    ----------
    prior_preset : prior size (:data:`mindeye_models.prior.PRIOR_PRESETS`); None picks the one
        matching the checkpoint's tokens (``paper`` for 257 x 768, ``small`` for 17 x 128).
    prior_epochs, prior_batch, prior_lr : the prior's recipe (AdamW, cosine decay).
    ae_steps : optimizer steps (batches of 32) of the tiny autoencoder on the stimulus images
        (ignored with a VAE); a fixed budget, whatever the number of images.
    head_epochs, head_hidden : the low-level head's recipe and width.
    val_fraction : share of training trials held out for the figures in the sidecar.
    seed : seeds every part.
    """

    prior_preset: str | None = None
    prior_epochs: int = 15
    prior_batch: int = 64
    prior_lr: float = 1e-3
    ae_steps: int = 600
    head_epochs: int = 30
    head_hidden: int = 512
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("prior_epochs", "prior_batch", "ae_steps", "head_epochs", "head_hidden"):
            check_number(getattr(self, key), key, minimum=1, integer=True)
        check_number(self.prior_lr, "prior_lr", minimum=0, strict_min=True)
        check_number(self.val_fraction, "val_fraction", minimum=0, maximum=0.5)
        check_number(self.seed, "seed", minimum=0, integer=True)
        if self.prior_preset is not None:
            check_choice(self.prior_preset, "prior_preset", list(PRIOR_PRESETS))

    def recipe(self, part: str) -> dict[str, Any]:
        """The options that decide part ``part`` (``lowlevel`` or ``prior``) of a bundle."""
        names = _LOWLEVEL_FIELDS if part == "lowlevel" else _PRIOR_FIELDS
        return {k: v for k, v in asdict(self).items() if k in names}


@dataclass
class _Job:
    """What one :func:`ensure_recon_models` call works on."""

    dataset: Any
    checkpoint: Path
    config: ReconTrainConfig
    token_shape: tuple[int, int]
    responses: np.ndarray
    image_ids: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    belongs_to: dict[str, Any]  # the checkpoint's and the data's hashes
    recipes: dict[str, dict[str, Any]]  # per part, what must match to reuse it
    clip_weights: str | None = None
    cache_dir: str | Path | None = None
    progress: bool = True
    log: Callable[[str], None] = print


def ensure_recon_models(
    dataset: Any,
    checkpoint: str | Path,
    *,
    models_dir: str | Path,
    with_prior: bool = True,
    config: ReconTrainConfig | None = None,
    vae: str | Path | None = None,
    clip_weights: str | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Path of the reconstruction bundle of ``checkpoint``; trains the parts it lacks.

    Parameters
    ----------
    dataset : a :class:`replay_data.dataset.ReplayDataset` with training responses.
    checkpoint : the MindEye checkpoint (``.safetensors``) whose backbone feeds the prior.
    models_dir : folder of cached models.
    with_prior : also make sure of the diffusion prior (``full`` mode needs it; ``lowlevel``
        sessions pass False and never wait for it).
    config : training options (:class:`ReconTrainConfig`).
    vae : a local diffusers AutoencoderKL directory; None trains a tiny autoencoder on the
        stimulus images.
    clip_weights : local CLIP weights of the checkpoint's embedder (ViT-L/14).
    cache_dir : folder of cached image banks.
    force : retrain the needed parts even if the cached bundle has them.
    progress, log : progress bars (epochs and loss of every phase) and one-line messages.
    """
    log = log or (lambda _msg: None)
    job = _make_job(dataset, Path(checkpoint), config or ReconTrainConfig(), vae)
    job.clip_weights, job.cache_dir, job.progress, job.log = clip_weights, cache_dir, progress, log
    key = cache_key(job.belongs_to, job.recipes["lowlevel"], BUNDLE_VERSION, length=12)
    path = Path(models_dir) / f"{job.checkpoint.stem}-recon-{key}.safetensors"
    needed = PARTS if with_prior else ("lowlevel",)
    cached = () if force else _matching_parts(path, job)
    if all(p in cached for p in needed):
        log(f"using the cached reconstruction models {path}")
        return path
    start = time.perf_counter()
    parts, part_info = _gather_parts(job, path, cached, needed)
    info = {"checkpoint": str(job.checkpoint), **job.belongs_to}
    info.update(n_train=len(job.train_idx), n_val=len(job.val_idx))
    info["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    ReconBundle(job.token_shape, **parts, info=info, part_info=part_info).save(path)
    _log_figures(log, part_info, time.perf_counter() - start, path)
    return path


def _gather_parts(
    job: _Job, path: Path, cached: tuple[str, ...], needed: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The modules and records of the bundle to save: the cached parts kept as they are, the
    needed ones the cache lacks trained."""
    try:
        kept = load_bundle(path) if cached else None
    except WeightsError as err:  # a damaged file: retrain what is needed
        job.log(f"retraining the reconstruction models: {err}")
        kept, cached = None, ()
    if kept is not None:
        missing = " and ".join(p for p in needed if p not in cached)
        job.log(f"adding the {missing} to {path.name}")
    parts: dict[str, Any] = {}
    part_info: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        if part in cached:
            parts.update(kept.modules(part))
            part_info[part] = kept.part_info.get(part, {})
        elif part in needed:
            modules, part_info[part] = _train_part(job, part)
            parts.update(modules)
    return parts, part_info


def _make_job(dataset: Any, checkpoint: Path, config: ReconTrainConfig, vae: Any) -> _Job:
    """The training set, its split and what the bundle's parts must match."""
    responses, image_ids = dataset.training_responses()
    image_ids = np.asarray(image_ids, np.int64)
    if len(responses) < 10:
        raise ConfigError(
            f"dataset {dataset.meta.name!r} has {len(responses)} training trials; the "
            "reconstruction models need at least 10"
        )
    meta = read_sidecar(checkpoint)
    model_cfg = meta.get("config", {})
    if model_cfg.get("n_voxels") != responses.shape[1]:
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} takes {model_cfg.get('n_voxels')} voxels but dataset "
            f"{dataset.meta.name!r} has {responses.shape[1]}: use a checkpoint of this subject"
        )
    token_shape = (int(model_cfg["n_tokens"]), int(model_cfg["clip_dim"]))
    train_idx, val_idx = _split(len(responses), config.val_fraction, config.seed)
    belongs_to = {
        "checkpoint_sha": file_sha256(checkpoint),
        "data_fingerprint": data_fingerprint(responses, image_ids, "recon"),
    }
    lowlevel = {**config.recipe("lowlevel"), "vae": str(Path(vae).resolve()) if vae else None}
    recipes = {"lowlevel": lowlevel, "prior": prior_recipe(checkpoint, meta, config, token_shape)}
    recipes = json.loads(json.dumps(recipes))  # as the sidecar stores them
    return _Job(
        dataset,
        checkpoint,
        config,
        token_shape,
        responses,
        image_ids,
        train_idx,
        val_idx,
        belongs_to,
        recipes,
    )


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n >= 10 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _matching_parts(path: Path, job: _Job) -> tuple[str, ...]:
    """The parts of the bundle at ``path`` that belong to this checkpoint and data and were
    trained with this call's recipes."""
    try:
        meta = read_bundle_sidecar(path)
    except WeightsError:
        return ()
    extra = meta.get("extra", {})
    if any(extra.get(k) != v for k, v in job.belongs_to.items()):
        return ()
    return tuple(
        p for p in PARTS if meta.get(p, {}).get("info", {}).get("recipe") == job.recipes[p]
    )


def _train_part(job: _Job, part: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or, for a joint prior, load) ``part`` and evaluate it on the held-out trials;
    returns its modules and its record."""
    start = time.perf_counter()
    if part == "lowlevel":
        head, autoencoder, latents, info = _train_lowlevel(job)
        modules = {"head": head, "autoencoder": autoencoder}
        info.update(_evaluate_lowlevel(job, head, autoencoder, latents))
    else:
        prior, cond, targets, info = train_prior_part(job)
        modules = {"prior": prior}
        info.update(evaluate_prior(job, prior, cond, targets))
    info.update(recipe=job.recipes[part], train_seconds=round(time.perf_counter() - start, 1))
    return modules, info


def _train_lowlevel(job: _Job) -> tuple[Any, Any, torch.Tensor, dict[str, Any]]:
    """The autoencoder (tiny one trained, or the VAE) and the low-level head on its latents."""
    cfg, stimuli = job.config, job.dataset.stimuli()
    uniq = np.unique(job.image_ids)
    vae = job.recipes["lowlevel"]["vae"]
    if vae:
        autoencoder = load_autoencoder(vae)
        info: dict[str, Any] = {"autoencoder": f"diffusers VAE {vae}"}
    else:
        epochs = -(-cfg.ae_steps // -(-len(uniq) // 32))
        job.log(f"training the tiny autoencoder on {len(uniq)} images ({epochs} epochs)")
        autoencoder, hist = train_autoencoder(
            np.asarray(stimuli[uniq]),
            epochs=epochs,
            batch_size=32,
            seed=cfg.seed,
            progress=job.progress,
        )
        info = {"autoencoder": "tiny", "autoencoder_final_loss": round(hist[-1], 5)}
    latents = encode_rows(autoencoder, stimuli, job.image_ids)
    voxels = torch.from_numpy(np.asarray(job.responses, np.float32))
    job.log(
        f"training the low-level head on {len(job.train_idx)} trials ({cfg.head_epochs} epochs)"
    )
    with torch.random.fork_rng(devices=[]):  # the seed decides the initial weights and dropout
        torch.manual_seed(cfg.seed)
        shape = tuple(latents.shape[1:])
        head = LowLevelHead(LowLevelConfig(voxels.shape[1], shape, hidden=cfg.head_hidden))
        hist = train_lowlevel_head(
            head,
            voxels[job.train_idx],
            latents[job.train_idx],
            epochs=cfg.head_epochs,
            seed=cfg.seed,
            progress=job.progress,
        )
    info["head_final_loss"] = round(hist[-1], 5)
    return head, autoencoder, latents, info


# -- held-out evaluation -------------------------------------------------------------------------


@torch.no_grad()
def _evaluate_lowlevel(job: _Job, head: Any, autoencoder: Any, latents: torch.Tensor) -> dict:
    """PixCorr of the held-out blurry images (and of the autoencoder's own round trip, its
    ceiling) against the seen images, with the shuffled baseline."""
    val = job.val_idx
    if len(val) < 2:
        return {}
    voxels = torch.from_numpy(np.asarray(job.responses[val], np.float32))
    recons = autoencoder.decode_latents(head(voxels))
    seen = autoencoder.decode_latents(latents[val])
    truth = np.asarray(job.dataset.stimuli()[job.image_ids[val]])  # resized to the recons' size
    return {
        "val_blurry": _pixcorr(recons, truth),
        "val_autoencoder_pixcorr": _pixcorr(seen, truth)["pixcorr"],
    }


def _pixcorr(recons: np.ndarray, images: np.ndarray) -> dict[str, float]:
    res = shuffled_baseline("PixCorr", recons, images, size=int(recons.shape[1]), n_shuffles=5)
    return {"pixcorr": round(res["matched"], 4), "pixcorr_shuffled": round(res["mean"], 4)}


def _log_figures(log: Callable, part_info: dict[str, dict], seconds: float, path: Path) -> None:
    low, prior = part_info.get("lowlevel", {}).get("val_blurry"), part_info.get("prior", {})
    text = f"reconstruction models ready in {seconds:.0f} s"
    if low:
        text += f"; held-out blurry PixCorr {low['pixcorr']:.3f} (shuffled "
        text += f"{low['pixcorr_shuffled']:.3f})"
    if "val_class_cosine_prior" in prior:
        text += f"; prior class-token cosine {prior['val_class_cosine_prior']:.3f} (backbone "
        text += f"{prior['val_class_cosine_backbone']:.3f})"
    log(f"{text}; saved {path}")
