"""Training MindEye's voxel-to-CLIP network with the paper's contrastive recipe.

Recipe (MindEye1): AdamW (weight decay on weight matrices only), one-cycle learning-rate
schedule peaking at 3e-4, BiMixCo with MixCo voxel mixup for the first third of the epochs, then
SoftCLIP with a cosine-annealed temperature.  The contrastive losses act on the projector
output; the backbone output is, in the paper, trained through the diffusion prior, here
optionally through an MSE term (``backbone_mse``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mindeye_models.inference import predict, rows
from mindeye_models.losses import cosine_anneal, flat_normalize, mixco, mixco_nce, soft_clip_loss
from mindeye_models.model import MindEye
from rt_base.checks import check_number, check_torch_device
from rt_base.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train_mindeye` (defaults: the MindEye1 recipe).

    Parameters
    ----------
    epochs : passes over the training trials.
    batch_size : trials per step (the last partial batch of an epoch is dropped).
    max_lr : peak learning rate of the one-cycle schedule.
    weight_decay : AdamW weight decay of weight matrices (biases and norms get none).
    warmup_epochs : epochs of learning-rate warm-up (at most half the run).
    mixup_pct : fraction of the epochs trained with BiMixCo + voxel mixup; SoftCLIP after.
    mixco_beta : Beta(a, a) parameter of the mixing weights.
    mixco_select : fraction of each batch that is mixed.
    mixco_temp : BiMixCo temperature.
    softclip_temp_start, softclip_temp_end : SoftCLIP temperature, cosine-annealed per epoch.
    backbone_mse : weight of an MSE loss between the backbone tokens and the targets (0 in the
        paper's voxel2clip, where a diffusion prior trains the backbone).
    prior_mult : weight of the diffusion prior's loss when a prior is trained jointly
        (``train_mindeye(..., prior=...)``; MindEye: 30).
    seed : seeds the batch order, the mixup and dropout (the model's init is the caller's).
    device : torch device string, e.g. ``"cpu"`` or ``"cuda"``.
    """

    epochs: int = 240
    batch_size: int = 32
    max_lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_epochs: float = 2.0
    mixup_pct: float = 0.33
    mixco_beta: float = 0.15
    mixco_select: float = 0.5
    mixco_temp: float = 0.006
    softclip_temp_start: float = 0.004
    softclip_temp_end: float = 0.0075
    backbone_mse: float = 0.0
    prior_mult: float = 30.0
    seed: int = 42
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_number(self.epochs, "epochs", minimum=1, integer=True)
        check_number(self.batch_size, "batch_size", minimum=2, integer=True)
        check_number(self.max_lr, "max_lr", minimum=0, strict_min=True)
        check_number(self.weight_decay, "weight_decay", minimum=0)
        check_number(self.warmup_epochs, "warmup_epochs", minimum=0)
        check_number(self.mixup_pct, "mixup_pct", minimum=0, maximum=1)
        check_number(self.mixco_beta, "mixco_beta", minimum=0, strict_min=True)
        check_number(self.mixco_select, "mixco_select", minimum=0, maximum=1)
        for key in ("mixco_temp", "softclip_temp_start", "softclip_temp_end"):
            check_number(getattr(self, key), key, minimum=0, strict_min=True)
        check_number(self.backbone_mse, "backbone_mse", minimum=0)
        check_number(self.prior_mult, "prior_mult", minimum=0)
        check_number(self.seed, "seed", minimum=0, integer=True)
        check_torch_device(self.device, "device")

    @property
    def mixup_epochs(self) -> int:
        """Number of leading epochs trained with BiMixCo."""
        return int(self.mixup_pct * self.epochs)


def one_cycle(step: int, total: int, warmup: int, div: float = 25.0, final_div: float = 1e3):
    """Multiplier of ``max_lr`` at ``step``: cosine up from ``1/div`` over ``warmup`` steps,
    then cosine down to ``1/(div * final_div)`` (PyTorch's OneCycleLR shape)."""
    lo, end = 1.0 / div, 1.0 / (div * final_div)
    if step < warmup:
        return lo + (1 - lo) * (1 - math.cos(math.pi * step / warmup)) / 2
    span = max(total - 1 - warmup, 1)
    frac = min((step - warmup) / span, 1.0)
    return end + (1 - end) * (1 + math.cos(math.pi * frac)) / 2


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only: biases and LayerNorm parameters (1-D) get none."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _check_data(model: MindEye, voxels: Any, targets: Any, what: str) -> None:
    cfg = model.config
    if voxels.ndim != 2 or voxels.shape[1] != cfg.n_voxels:
        raise ConfigError(
            f"'{what} voxels' must be (N, {cfg.n_voxels}) for this model, got shape "
            f"{tuple(voxels.shape)}: build the model with n_voxels from the data"
        )
    if tuple(targets.shape) != (len(voxels), *cfg.token_shape):
        raise ConfigError(
            f"'{what} targets' must be ({len(voxels)}, {cfg.n_tokens}, {cfg.clip_dim}) "
            f"(one {cfg.embedder} token set per trial), got shape {tuple(targets.shape)}"
        )
    if len(voxels) < 2:
        raise ConfigError(f"'{what} voxels' needs at least 2 trials, got {len(voxels)}")


def _top1(preds: torch.Tensor, targets: torch.Tensor) -> float:
    sims = flat_normalize(preds) @ flat_normalize(targets).T
    return (sims.argmax(-1) == torch.arange(len(sims), device=sims.device)).float().mean().item()


def _validate(model: MindEye, val: tuple[Any, Any], phase: str, temp: float) -> tuple[float, float]:
    """Loss and top-1 (within chunks of 300 trials, as MindEye reports) on held-out data."""
    voxels, targets = val
    losses, hits, n = [], 0.0, 0
    _, proj = predict(model, voxels)
    for i in range(0, len(proj), 300):
        p = proj[i : i + 300]
        t = torch.as_tensor(np.asarray(targets[i : i + 300], dtype=np.float32))
        if len(p) < 2:
            continue
        if phase == "bimixco":
            losses.append(mixco_nce(p, t, temperature=temp).item())
        else:
            losses.append(soft_clip_loss(p, t, temperature=temp).item())
        hits += _top1(p, t) * len(p)
        n += len(p)
    return float(np.mean(losses)) if losses else float("nan"), hits / max(n, 1)


def train_mindeye(
    model: MindEye,
    voxels: np.ndarray,
    targets: np.ndarray,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    prior: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place to map responses to CLIP image tokens.

    Also sets the model's input normalization from ``voxels``.

    Parameters
    ----------
    model : MindEye
    voxels : (N, V) float32 array of per-trial responses (raw; normalized inside the model).
    targets : (N, T, D) float32 array of the embedder's tokens of each trial's image.
    config : TrainConfig; None for the defaults.
    progress : show a tqdm bar over epochs.
    val : optional held-out ``(voxels (M, V), targets (M, T, D))`` evaluated every epoch.
    prior : a :class:`~mindeye_models.prior.DiffusionPrior` trained jointly, as in MindEye: its
        denoising loss on the backbone tokens (weighted by ``config.prior_mult``) is added to
        the contrastive loss and trains the backbone too.  Its ``data_scale`` is set from
        ``targets``; it is left in eval mode.

    Returns
    -------
    history : dict of per-epoch lists ``epoch``, ``phase``, ``temperature``, ``lr``, ``loss``,
        ``train_top1`` (in-batch), ``val_loss``/``val_top1`` (when ``val``), ``seconds``;
        plus ``config`` (the TrainConfig as a dict) and ``n_train``.
    """
    cfg = TrainConfig() if config is None else config
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"'config' must be a TrainConfig, got {type(cfg).__name__}")
    _check_data(model, voxels, targets, "training")
    if val is not None:
        _check_data(model, val[0], val[1], "val")
    device = torch.device(cfg.device)
    plan = _Plan.of(cfg, len(voxels))
    trained = _prepare_models(model, prior, voxels, targets, device)
    optimizer = torch.optim.AdamW(_param_groups(trained, cfg.weight_decay), lr=cfg.max_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: one_cycle(s, plan.total, plan.warmup)
    )
    run = _Run(model, prior, trained, cfg, plan, np.random.default_rng(cfg.seed), optimizer)
    run.schedule, run.device, run.history = schedule, device, _new_history(cfg, voxels, val)
    forked = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(cfg.seed)
        bar = tqdm(range(cfg.epochs), desc="train MindEye", unit="epoch", disable=not progress)
        for epoch in bar:
            bar.set_postfix(_run_epoch(run, epoch, voxels, targets, val))
    trained.eval()
    return run.history


@dataclass(frozen=True)
class _Plan:
    """Batch size, step counts and the loss schedule of one :func:`train_mindeye` run."""

    bs: int
    steps_per_epoch: int
    total: int
    warmup: int
    n_mix: int
    mixco_temp: float
    soft_temps: Any

    @classmethod
    def of(cls, cfg: TrainConfig, n: int) -> _Plan:
        bs = min(cfg.batch_size, n)
        total = cfg.epochs * (n // bs)
        warmup = int(min(cfg.warmup_epochs / cfg.epochs, 0.5) * total)
        n_mix = cfg.mixup_epochs
        temps = cosine_anneal(cfg.softclip_temp_start, cfg.softclip_temp_end, cfg.epochs - n_mix)
        return cls(bs, n // bs, total, warmup, n_mix, cfg.mixco_temp, temps)

    def phase(self, epoch: int) -> tuple[str, float]:
        """The loss of ``epoch`` and its temperature: BiMixCo in the mixup epochs, then SoftCLIP
        with the annealed temperature."""
        if epoch < self.n_mix:
            return "bimixco", self.mixco_temp
        return "softclip", self.soft_temps[epoch - self.n_mix]


@dataclass
class _Run:
    """The state one :func:`train_mindeye` run carries from epoch to epoch."""

    model: MindEye
    prior: Any
    trained: torch.nn.Module  # the model, or the model and the joint prior
    cfg: TrainConfig
    plan: _Plan
    rng: np.random.Generator  # batch order and mixup
    optimizer: torch.optim.Optimizer
    schedule: Any = None
    device: torch.device | None = None
    history: dict[str, Any] | None = None


def _prepare_models(
    model: MindEye, prior: Any, voxels: Any, targets: Any, device: torch.device
) -> torch.nn.Module:
    """Move the model (and the joint prior) to ``device``, fit the input normalization and the
    prior's data scale; returns the module whose parameters are trained."""
    model.to(device)
    model.fit_input_normalization(voxels)
    if prior is None:
        return model
    if tuple(prior.config.token_shape) != (model.config.n_tokens, model.config.clip_dim):
        raise ConfigError(
            f"the prior denoises {prior.config.token_shape} tokens but the model predicts "
            f"({model.config.n_tokens}, {model.config.clip_dim}): use a matching prior preset"
        )
    prior.to(device)
    n = len(voxels)
    prior.fit_scale(torch.as_tensor(np.asarray(targets[: min(n, 4096)]), device=device))
    return torch.nn.ModuleList([model, prior])


def _new_history(cfg: TrainConfig, voxels: Any, val: Any) -> dict[str, Any]:
    history: dict[str, Any] = {k: [] for k in ("epoch", "phase", "temperature", "lr", "loss")}
    history.update(train_top1=[], seconds=[], config=asdict(cfg), n_train=len(voxels))
    if val is not None:
        history.update(val_loss=[], val_top1=[])
    return history


def _run_epoch(run: _Run, epoch: int, voxels: Any, targets: Any, val: Any) -> dict[str, str]:
    """Train one epoch, validate, and record its figures; returns the progress bar's postfix."""
    t0 = time.perf_counter()
    phase, temp = run.plan.phase(epoch)
    run.trained.train()
    loss_sum, top1_sum = _train_epoch(run, epoch, phase, temp, voxels, targets)
    history, steps = run.history, run.plan.steps_per_epoch
    history["epoch"].append(epoch)
    history["phase"].append(phase)
    history["temperature"].append(float(temp))
    history["lr"].append(run.optimizer.param_groups[0]["lr"])
    history["loss"].append(loss_sum / steps)
    history["train_top1"].append(top1_sum / steps)
    post = {"loss": f"{loss_sum / steps:.3f}", "phase": phase}
    if val is not None:
        vl, vt = _validate(run.model, val, phase, temp)
        history["val_loss"].append(vl)
        history["val_top1"].append(vt)
        post["val_top1"] = f"{vt:.2f}"
    history["seconds"].append(time.perf_counter() - t0)
    return post


def _train_epoch(
    run: _Run, epoch: int, phase: str, temp: float, voxels: Any, targets: Any
) -> tuple[float, float]:
    """One pass over the shuffled training trials; returns the sums of the batches' losses and
    in-batch top-1."""
    order = run.rng.permutation(len(voxels))
    bs, loss_sum, top1_sum = run.plan.bs, 0.0, 0.0
    for b in range(run.plan.steps_per_epoch):
        idx = order[b * bs : (b + 1) * bs]
        x, y = rows(voxels, idx, run.device), rows(targets, idx, run.device)
        loss, proj = _batch_loss(run, phase, temp, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {epoch}, step {b}: lower "
                f"'max_lr' (now {run.cfg.max_lr}) or raise the temperatures"
            )
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.schedule.step()
        loss_sum += loss.item()
        top1_sum += _top1(proj.detach(), y)
    return loss_sum, top1_sum


def _batch_loss(
    run: _Run, phase: str, temp: float, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's loss (contrastive, plus the backbone MSE and the joint prior's terms) and the
    projector output."""
    cfg, model = run.cfg, run.model
    if phase == "bimixco":
        x, perm, w = mixco(x, beta=cfg.mixco_beta, select_frac=cfg.mixco_select, rng=run.rng)
        tokens, proj = model(x)
        loss = mixco_nce(proj, y, temperature=temp, perm=perm, weights=w)
        y_bb = y * w[:, None, None] + y[perm] * (1 - w[:, None, None])
    else:
        tokens, proj = model(x)
        loss = soft_clip_loss(proj, y, temperature=temp)
        y_bb = y
    if cfg.backbone_mse > 0:
        loss = loss + cfg.backbone_mse * F.mse_loss(tokens, y_bb)
    if run.prior is not None:
        loss = loss + cfg.prior_mult * run.prior.loss(tokens, y_bb)
    return loss, proj
