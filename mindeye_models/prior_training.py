"""Training of the diffusion prior of a checkpoint's reconstruction bundle, and its figures.

The ``prior`` part of a reconstruction bundle (:mod:`mindeye_models.recon_training`) is either
trained here on the frozen backbone's tokens of the training trials against the embedder's
tokens of their images (MindEye's "after" variant, :func:`train_prior`), or loaded from the prior
trained jointly with the backbone (``mindeye-rt train --prior joint``).  The held-out figure is
the class-token cosine (:func:`class_cosine`) of the prior's samples and of the backbone's own
tokens to the CLIP targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from mindeye_models.bank import ImageBank
from mindeye_models.checkpoint import load_checkpoint
from mindeye_models.embedder import load_embedder
from mindeye_models.fitting import fit_epochs
from mindeye_models.inference import predict
from mindeye_models.prior import DiffusionPrior, get_prior_preset, prior_preset_for
from mindeye_models.recon_bundle import load_bundle
from rt_base.checks import check_number
from rt_base.errors import WeightsError
from rt_base.hashing import file_sha256

if TYPE_CHECKING:
    from mindeye_models.recon_training import ReconTrainConfig, _Job


def prior_recipe(
    checkpoint: Path, meta: dict[str, Any], config: ReconTrainConfig, token_shape: tuple[int, int]
) -> dict[str, Any]:
    """The prior trained after the backbone, or the one trained with it (``train --prior
    joint``, recorded in the checkpoint's sidecar)."""
    joint = meta.get("extra", {}).get("joint_prior_file")
    if joint:
        path = checkpoint.parent / joint
        if not path.is_file():
            raise WeightsError(
                f"checkpoint {str(checkpoint)!r} was trained with a joint prior, but its prior "
                f"file {str(path)!r} is missing: retrain with `mindeye-rt train --prior joint "
                "--force`"
            )
        return {"training": "joint", "joint_prior": path.name, "sha256": file_sha256(path)}
    preset = config.prior_preset or prior_preset_for(token_shape)
    return {"training": "after", **config.recipe("prior"), "prior_preset": preset}


def train_prior_part(job: _Job) -> tuple[Any, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The prior (loaded if trained jointly, else trained on the frozen backbone) and the
    backbone tokens and CLIP targets of every training trial."""
    cond, targets = _backbone_and_targets(job)
    recipe, cfg = job.recipes["prior"], job.config
    if recipe["training"] == "joint":
        job.log(f"using the prior trained jointly with the backbone ({recipe['joint_prior']})")
        prior = load_bundle(job.checkpoint.parent / recipe["joint_prior"]).prior
        return prior.eval(), cond, targets, {"training": "joint"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        prior = DiffusionPrior(get_prior_preset(recipe["prior_preset"]))
    job.log(
        f"training the diffusion prior ({recipe['prior_preset']}) on {len(job.train_idx)} "
        f"trials ({cfg.prior_epochs} epochs)"
    )
    hist = train_prior(
        prior,
        cond[job.train_idx],
        targets[job.train_idx],
        epochs=cfg.prior_epochs,
        batch_size=cfg.prior_batch,
        lr=cfg.prior_lr,
        seed=cfg.seed,
        progress=job.progress,
    )
    return prior, cond, targets, {"training": "after", "final_loss": round(hist[-1], 5)}


def _backbone_and_targets(job: _Job) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, D) backbone tokens of the training trials and their images' CLIP tokens."""
    model, extra = load_checkpoint(job.checkpoint)
    embedder = load_embedder(extra.get("embedder", "tiny-random"), weights=job.clip_weights)
    uniq = np.unique(job.image_ids)
    images = np.asarray(job.dataset.stimuli()[uniq])
    bank = ImageBank.build(images, uniq, embedder, cache_dir=job.cache_dir)
    return predict(model, job.responses)[0], torch.from_numpy(bank.lookup(job.image_ids))


def train_prior(
    prior,
    cond: torch.Tensor,
    target: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fit a :class:`~mindeye_models.prior.DiffusionPrior` on fixed condition tokens.

    Sets the prior's ``data_scale`` from ``target`` first.  AdamW with cosine decay.

    Returns
    -------
    Per-epoch mean loss; the prior is left in eval mode.
    """
    epochs = check_number(epochs, "epochs", minimum=1, integer=True)
    prior.fit_scale(target)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * -(-len(cond) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    prior.train()
    history = fit_epochs(
        lambda idx: prior.loss(cond[idx], target[idx], generator=g),
        len(cond),
        opt,
        epochs=epochs,
        batch_size=batch_size,
        generator=g,
        scheduler=sched,
        desc="train prior",
        progress=progress,
    )
    prior.eval()
    return history


@torch.no_grad()
def evaluate_prior(job: _Job, prior: Any, cond: torch.Tensor, targets: torch.Tensor) -> dict:
    """Class-token cosine to the CLIP targets of the held-out trials: the prior's samples vs
    the backbone's own tokens."""
    val = job.val_idx
    if not len(val):
        return {}
    g = torch.Generator().manual_seed(job.config.seed)
    sampled = prior.sample(cond[val], steps=10, generator=g)
    return {
        "val_class_cosine_prior": round(class_cosine(sampled, targets[val]), 4),
        "val_class_cosine_backbone": round(class_cosine(cond[val], targets[val]), 4),
    }


def class_cosine(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cosine similarity of the class tokens (the CLIP image embeddings)."""
    return float(F.cosine_similarity(pred[:, 0].float(), target[:, 0].float(), dim=-1).mean())
