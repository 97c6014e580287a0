"""The MindEye model cache: a checkpoint per training set and preset, trained on first use.

:func:`ensure_model` serves every preset (``demo``, ``tiny``, the paper's ``mindeye1-subj01``
...).  The cache is content-addressed: the checkpoint's key covers everything that determines
the weights -- a fingerprint of the training responses, trial image ids and training images, the
preset, the model config, the embedder's identity and the training options -- and not the
dataset's name.  The file is named ``PRESET-DATASET-KEY.safetensors`` after the dataset it was
first trained for, so it stays readable; any call whose inputs give the same key finds and
reuses it (e.g. ``subj01-moving``, whose training data are ``subj01``'s), and returns at once.

The reconstruction models of a checkpoint are a separate step
(:func:`mindeye_models.recon_training.ensure_recon_models`), called after this one.  A diffusion
prior trained jointly with the backbone (``joint_prior=True``) is saved next to the checkpoint
as a prior-only reconstruction bundle, which that step then takes instead of training one.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindeye_models.bank import ImageBank, images_hash
from mindeye_models.checkpoint import read_sidecar, save_checkpoint
from mindeye_models.embedder import ImageEmbedder, load_embedder
from mindeye_models.inference import evaluate_retrieval
from mindeye_models.model import MindEye
from mindeye_models.presets import MindEyeConfig, get_preset
from mindeye_models.prior import DiffusionPrior, get_prior_preset, prior_preset_for
from mindeye_models.recon_bundle import ReconBundle
from mindeye_models.train import TrainConfig, train_mindeye
from rt_base.checks import check_number
from rt_base.errors import ConfigError, WeightsError
from rt_base.hashing import array_sha256, cache_key

#: Training options per preset (the paper's recipe; shorter and with larger batches on CPU).
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "mindeye1-subj01": TrainConfig(),
    "demo": TrainConfig(epochs=30, batch_size=64),
    "tiny": TrainConfig(epochs=10, batch_size=32),
}
_ROWS = 512  # responses hashed per chunk (no full copy of a large training set)


def train_config_for(preset: str, epochs: int | None = None) -> TrainConfig:
    """The training options of ``preset``, with ``epochs`` replaced when given."""
    cfg = TRAIN_PRESETS.get(preset, TrainConfig())
    if epochs is not None:
        cfg = replace(cfg, epochs=check_number(epochs, "epochs", minimum=1, integer=True))
    return cfg


def data_fingerprint(responses: np.ndarray, image_ids: np.ndarray, images_key: str) -> str:
    """Short content hash of training responses (N, V), their image ids (N,) and
    ``images_key`` (a hash of the images, or any label of what they are)."""
    chunks = [responses[i : i + _ROWS] for i in range(0, len(responses), _ROWS)]
    return cache_key(images_key, array_sha256(np.asarray(image_ids, np.int64), *chunks))


@dataclass
class _Plan:
    """The checkpoint one :func:`ensure_model` call stands for, and its training data."""

    name: str
    preset: str
    config: MindEyeConfig
    embedder: ImageEmbedder
    train_cfg: TrainConfig
    responses: np.ndarray
    image_ids: np.ndarray
    train_ids: np.ndarray
    train_images: np.ndarray
    expect: dict[str, Any]  # what the checkpoint's sidecar must record to be reused
    key: str  # the content key of ``expect`` and ``config``, the end of the file name
    path: Path  # where it is saved when trained

    @property
    def joint_prior_path(self) -> Path:
        """Where a prior trained jointly with the backbone is saved."""
        return self.path.with_name(f"{self.path.stem}-joint-prior.safetensors")


def ensure_model(
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
) -> Path:
    """Path of a MindEye checkpoint trained on ``dataset``; trains and saves one if needed.

    Parameters
    ----------
    dataset : a :class:`replay_data.dataset.ReplayDataset` (uses ``.meta.name`` for the file
        name only, ``.meta.n_voxels``, ``.training_responses()``, ``.stimuli()``).
    models_dir : folder of cached checkpoints.
    preset : model preset (see :mod:`mindeye_models.presets`).
    embedder : ImageEmbedder or embedder name; None uses the preset's (``tiny-random`` for
        ``demo``).  The model's token shape follows the embedder.
    epochs : training epochs; None for the preset's (:data:`TRAIN_PRESETS`).
    progress : show progress bars.
    force : retrain even if a matching checkpoint exists.
    out : checkpoint path; None picks a name in ``models_dir`` keyed by the inputs and reuses
        any checkpoint there with the same key, whatever dataset name it carries.
    cache_dir : folder of cached image banks; None uses ``models_dir / "cache"``.
    log : called with one-line status messages.
    joint_prior : train a diffusion prior with the backbone (MindEye's recipe, its loss
        weighted ``prior_mult``) and save it next to the checkpoint (recorded in its sidecar
        as ``joint_prior_file``) for the reconstruction models.

    Returns
    -------
    Path of the ``.safetensors`` weights (the JSON sidecar lies next to it).
    """
    log = log or (lambda _msg: None)
    plan = _plan(dataset, Path(models_dir), preset, embedder, epochs, joint_prior, out)
    found = None if force else _find_cached(plan, search=out is None)
    if found is not None:
        log(f"using the cached MindEye model {found}")
        return found
    bank_dir = Path(models_dir) / "cache" if cache_dir is None else Path(cache_dir)
    _train_and_save(plan, bank_dir, progress=progress, log=log)
    return plan.path


def _plan(
    dataset: Any,
    models_dir: Path,
    preset: str,
    embedder: ImageEmbedder | str | None,
    epochs: int | None,
    joint_prior: bool,
    out: str | Path | None,
) -> _Plan:
    """The model config, the training data and the checkpoint's path and expected record."""
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
    train_ids = np.unique(image_ids)
    train_images = np.asarray(dataset.stimuli()[train_ids])
    expect = {
        "data_fingerprint": data_fingerprint(
            responses, image_ids, images_hash(train_images, train_ids)
        ),
        "preset": preset,
        "embedder": emb_name,
        "embedder_identity": embedder.identity,
        "train_config": asdict(train_cfg),
    }
    if joint_prior:
        expect["joint_prior"] = True
    key = cache_key(expect, config.to_dict(), length=12)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = Path(out) if out is not None else models_dir / f"{preset}-{safe}-{key}.safetensors"
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    return _Plan(
        name,
        preset,
        config,
        embedder,
        train_cfg,
        responses,
        image_ids,
        train_ids,
        train_images,
        expect,
        key,
        path,
    )


def _find_cached(plan: _Plan, *, search: bool) -> Path | None:
    """A checkpoint that matches the plan: at its own path, else (``search``) any
    ``PRESET-*-KEY.safetensors`` in its folder, trained for a dataset of another name."""
    candidates = [plan.path]
    if search:
        pattern = f"{glob.escape(plan.preset)}-*-{plan.key}.safetensors"
        candidates += sorted(p for p in plan.path.parent.glob(pattern) if p != plan.path)
    return next((p for p in candidates if _cached(replace(plan, path=p))), None)


def _cached(plan: _Plan) -> bool:
    """Is there a checkpoint at the plan's path whose sidecar records exactly its inputs (and,
    for a joint prior, the prior's file)?"""
    try:
        extra = read_sidecar(plan.path).get("extra", {})
    except WeightsError:
        return False
    if any(extra.get(k) != v for k, v in plan.expect.items()):
        return False
    return not plan.expect.get("joint_prior") or plan.joint_prior_path.is_file()


def _train_and_save(plan: _Plan, bank_dir: Path, *, progress: bool, log: Callable) -> None:
    """Train the model (and a joint prior, when the plan expects one) on the plan's data and
    save the checkpoint."""
    config, train_cfg = plan.config, plan.train_cfg
    log(
        f"training MindEye ({plan.preset}, {config.n_voxels} voxels, {config.embedder} targets) "
        f"on {len(plan.responses)} trials of {plan.name!r} for {train_cfg.epochs} epochs"
    )
    start = time.perf_counter()
    bank = ImageBank.build(plan.train_images, plan.train_ids, plan.embedder, cache_dir=bank_dir)
    targets = bank.lookup(plan.image_ids)
    prior = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = MindEye(config)
        if plan.expect.get("joint_prior"):
            prior = DiffusionPrior(get_prior_preset(prior_preset_for(config.token_shape)))
    history = train_mindeye(
        model, plan.responses, targets, train_cfg, progress=progress, prior=prior
    )
    fit = evaluate_retrieval(model, plan.responses, plan.image_ids, bank)
    seconds = time.perf_counter() - start
    extra = {
        **plan.expect,
        "dataset": plan.name,  # the dataset it was trained for (not part of the key)
        "n_voxels": config.n_voxels,
        "n_trials": len(plan.responses),
        "n_images": len(plan.train_ids),
        "train_seconds": round(seconds, 1),
        "final_loss": history["loss"][-1],
        "train_retrieval": fit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if prior is not None:
        extra["joint_prior_file"] = _save_joint_prior(prior, plan, fit).name
    save_checkpoint(model, plan.path, extra)
    log(
        f"trained in {seconds:.0f} s; training-set retrieval top-1 {fit['top1']:.2f} of "
        f"{fit['ways']} images; saved {plan.path}"
    )


def _save_joint_prior(prior: Any, plan: _Plan, fit: dict[str, Any]) -> Path:
    """Save a jointly trained prior as a prior-only reconstruction bundle."""
    info = {"checkpoint": plan.path.name, "dataset": plan.name}
    part_info = {"prior": {"training": "joint", "train_retrieval_top1": fit["top1"]}}
    bundle = ReconBundle(
        plan.config.token_shape, prior=prior.cpu().eval(), info=info, part_info=part_info
    )
    return bundle.save(plan.joint_prior_path)
