"""A trained MindEye carried over to a new subject: its backbone and projector kept, a new input
layer for the new subject's voxels (MindEye2's idea: a per-subject linear map into a shared
space), to be trained on a short first session of that subject."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.finetune import FinetuneResult, finetune_step
from mindeye_models.finetune_config import FinetuneConfig
from mindeye_models.model import MindEye
from rt_base.checks import check_number

#: the input layer's Linear: the only weights that depend on the voxel count
INPUT_LINEAR = ("backbone.lin0.0.weight", "backbone.lin0.0.bias")
NORMALIZATION = ("input_mean", "input_std")


def new_subject_model(model: MindEye, n_voxels: int, *, seed: int = 0) -> MindEye:
    """A copy of ``model`` for ``n_voxels`` voxels: every weight but the input Linear (freshly
    initialised with ``seed``) and the input normalization (identity until fitted)."""
    n_voxels = check_number(n_voxels, "n_voxels", minimum=1, integer=True)
    config = dataclasses.replace(model.config, n_voxels=int(n_voxels))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = MindEye(config)
    own = new.state_dict()
    kept = {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if k not in INPUT_LINEAR + NORMALIZATION
    }
    own.update(kept)
    new.load_state_dict(own)
    return new.eval()


def train_input_layer(
    model: MindEye,
    voxels: np.ndarray,
    image_ids: np.ndarray,
    targets: ImageBank,
    config: FinetuneConfig,
    *,
    log=None,
) -> FinetuneResult:
    """Fit the input normalization on ``voxels`` and train ``backbone.lin0`` on them (the last
    ``config.val_fraction`` held out); ``model`` is trained in place whatever the verdict, and
    to the end (alpha 1: a point between a random input layer and the trained one is no
    candidate)."""
    model.fit_input_normalization(voxels)
    config = dataclasses.replace(config, params="lin0", alphas=(1.0,))
    return finetune_step(model, voxels, image_ids, targets, config, log=log)
