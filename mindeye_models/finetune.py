"""Fine-tuning a trained MindEye on a few trials of the current session, with a held-out check.

Between runs of a real-time session the runs already decoded, whose images are known, are
training data: :func:`finetune_step` trains the chosen parameters (the per-subject input layer
``backbone.lin0`` by default, as MindEye2 fits a new subject's ridge; or all of them) with the
paper's contrastive losses (BiMixCo with voxel mixup for the first third of the epochs, then
SoftCLIP) against the image embeddings of each trial, and validates on held-out trials (the last
``val_fraction`` of the session, in decode order; with ``holdout="images"`` every trial of
their images): the true image's rank among the retrieval
candidates, before and after.  After training, points between the starting and the fine-tuned
weights (``config.alphas``) are validated too, and the best one that passes the verdict is the
step's result; a model that validates worse is returned as not accepted.

The input normalization is kept: the decoder's responses keep their scale from run to run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.finetune_config import FinetuneConfig
from mindeye_models.inference import predict
from mindeye_models.losses import mixco, mixco_nce, soft_clip_loss
from mindeye_models.model import MindEye
from mindeye_models.ranks import true_ranks
from rt_base.errors import ConfigError


@dataclass
class FinetuneResult:
    """What a step did: the trials used, validation before and after, the verdict."""

    accepted: bool
    reason: str
    n_train: int
    n_val: int
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    epochs_run: int = 0
    batches_run: int = 0
    stopped_early: bool = False
    alpha: float | None = None
    grid: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    n_rehearsal: int = 0
    losses: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_out_split(
    n: int, val_fraction: float, image_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the held-out trials: the last ``val_fraction`` of ``n``
    (at least one when ``n >= 2``), so validation is on the most recent trials.

    With ``image_ids`` (N,), the split is by image (``holdout="images"``): every trial showing
    an image of those last trials is held out, so no held-out image is trained on and the
    validation measures new images, as the first showings of the next run are."""
    n_val = min(n - 1, max(1, int(round(n * val_fraction)))) if n >= 2 else 0
    if image_ids is None or n_val == 0:
        return np.arange(n - n_val), np.arange(n - n_val, n)
    image_ids = np.asarray(image_ids).reshape(-1)
    held = np.isin(image_ids, image_ids[n - n_val :])
    return np.flatnonzero(~held), np.flatnonzero(held)


def validate(model: MindEye, voxels: np.ndarray, image_ids: np.ndarray, bank: ImageBank) -> dict:
    """Retrieval of held-out trials among every image of ``bank``: top-1, mean rank and mean
    reciprocal rank of the true image (ranks from :func:`mindeye_models.ranks.true_ranks`)."""
    _, proj = predict(model, voxels)
    ids, _ = bank.retrieve(proj, k=len(bank))
    ranks = true_ranks(ids, np.asarray(image_ids))
    if np.any(ranks == 0):
        raise ConfigError("every validation image must be in the bank it is ranked in")
    return {
        "top1": float(np.mean(ranks == 1)),
        "mean_rank": float(np.mean(ranks)),
        "mrr": float(np.mean(1.0 / ranks)),
        "n": int(len(ranks)),
        "ways": int(len(bank)),
    }


def is_better(after: dict, before: dict, verdict: str = "top1-rank") -> bool:
    """The rule of a swap.  ``top1-rank``: better held-out retrieval by one measure and worse by
    neither — top-1 not lower, mean rank not higher, and one of them strictly better.  On a few
    dozen held-out trials top-1 moves by whole trials: a one-trial gain with much worse ranks
    (measured on a second simulated subj02: top-1 18 -> 21 %, mean rank 9.6 -> 13.5) is not an
    improvement.  ``mrr``: mean reciprocal rank strictly higher and top-1 not lower (a smoother
    measure than top-1 that, unlike the mean rank, one far-off trial cannot dominate)."""
    if verdict == "mrr":
        return after["mrr"] > before["mrr"] and after["top1"] >= before["top1"]
    top1_up, top1_down = after["top1"] > before["top1"], after["top1"] < before["top1"]
    rank_up = after["mean_rank"] > before["mean_rank"]
    rank_down = after["mean_rank"] < before["mean_rank"]
    return not top1_down and not rank_up and (top1_up or rank_down)


def finetune_step(
    model: MindEye,
    voxels: np.ndarray,
    image_ids: np.ndarray,
    targets: ImageBank,
    config: FinetuneConfig | None = None,
    *,
    log=None,
    rehearsal=None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place on the session's trials so far and validate it.

    Parameters
    ----------
    model : MindEye (trained); its parameters outside ``config.params`` are left as they are.
    voxels : (N, V) responses in decode order.
    image_ids : (N,) the image of each trial; all must be in ``targets``.
    targets : the image embeddings of the trials' images; validation ranks among all of them.
    config : FinetuneConfig; None for the defaults.
    log : optional ``log(text)`` for progress lines.
    rehearsal : optional :class:`~mindeye_models.finetune_rehearsal.Rehearsal` (the trials the
        starting model was trained on): each batch also carries ``config.rehearsal_ratio``
        times as many of them; validation stays on the session's held-out trials.

    Returns
    -------
    FinetuneResult; ``accepted`` is False when the step was skipped (too few trials), no batch
    fitted in the budget, the loss stopped being finite, or no weight of ``config.alphas``
    validated better (``model`` then holds the fine-tuned weights, alpha 1, or what training
    left: the caller keeps its own copy of the current ones).  When accepted, ``model`` holds
    the chosen point ``result.alpha`` and ``result.after`` is its validation; ``result.grid``
    has the validation of every alpha tried.
    """
    cfg = FinetuneConfig() if config is None else config
    voxels = np.asarray(voxels, np.float32)
    image_ids = np.asarray(image_ids, np.int64).reshape(-1)
    if voxels.ndim != 2 or len(voxels) != len(image_ids):
        raise ConfigError(
            f"'voxels' must be (N, V) with one row per image id ({len(image_ids)}), got "
            f"{voxels.shape}"
        )
    by_image = image_ids if cfg.holdout == "images" else None
    train, val = held_out_split(len(voxels), cfg.val_fraction, by_image)
    result = FinetuneResult(False, "", len(train), len(val), config=asdict(cfg))
    if len(train) < cfg.min_train or len(val) < cfg.min_val:
        result.reason = (
            f"too few trials: {len(train)} to train, {len(val)} to validate (needs "
            f"{cfg.min_train} and {cfg.min_val})"
        )
        return result
    model.to(cfg.device)
    started = time.perf_counter()
    deadline = started + cfg.budget_s
    predict(model, voxels[val[:2]])  # warm: a first call carries one-time costs
    t = time.perf_counter()
    result.before = validate(model, voxels[val], image_ids[val], targets)
    val_s = time.perf_counter() - t
    tokens = torch.from_numpy(targets.lookup(image_ids[train])).to(cfg.device)
    x = torch.from_numpy(voxels[train]).to(cfg.device)
    params = trained_parameters(model, cfg.params)
    start_weights = [p.detach().clone() for p in params]
    # after training: one validation per alpha (each as long as the first, with a margin)
    train_deadline = deadline - 1.5 * val_s * len(cfg.alphas)
    extra = None
    if rehearsal is not None and len(rehearsal):
        shapes = (rehearsal.voxels.shape[1], rehearsal.bank.token_shape)
        if shapes != (voxels.shape[1], targets.token_shape):
            raise ConfigError(
                f"the rehearsal trials have {shapes[0]} voxels and embeddings {shapes[1]}; the "
                f"session's have {voxels.shape[1]} and {targets.token_shape}"
            )
        extra = (
            torch.from_numpy(np.asarray(rehearsal.voxels, np.float32)).to(cfg.device),
            torch.from_numpy(rehearsal.bank.lookup(rehearsal.image_ids)).to(cfg.device),
        )
        result.n_rehearsal = len(rehearsal)
    finite = _train(
        model, params, x, tokens, cfg, result, log, deadline=train_deadline, rehearsal=extra
    )
    if not finite:
        result.after = validate(model, voxels[val], image_ids[val], targets)
        result.reason = f"the loss stopped being finite at epoch {result.epochs_run}: lower 'lr'"
        return result
    if result.batches_run == 0:
        result.after = result.before
        result.reason = "no time left in the budget to train: the current model is kept"
        return result
    tuned_weights = [p.detach().clone() for p in params]
    for alpha in cfg.alphas:
        if result.grid and time.perf_counter() + val_s > deadline:
            break  # out of time: the points validated so far are the choice
        t = time.perf_counter()
        blend(params, start_weights, tuned_weights, alpha)
        row = validate(model, voxels[val], image_ids[val], targets)
        result.grid.append({"alpha": alpha, **row})
        val_s = max(val_s, time.perf_counter() - t)
    best = select_alpha(result.grid, result.before, cfg.verdict)
    chosen = result.grid[-1] if best is None else best  # rejected: the last point tried
    blend(params, start_weights, tuned_weights, chosen["alpha"])
    result.after = {k: v for k, v in chosen.items() if k != "alpha"}
    if best is not None:
        result.accepted, result.alpha = True, chosen["alpha"]
        result.reason = f"held-out retrieval improved (alpha {chosen['alpha']:g})"
    else:
        result.reason = "held-out retrieval did not improve: the current model is kept"
    return result


def select_alpha(grid: list[dict], before: dict, verdict: str = "top1-rank") -> dict | None:
    """The point of ``grid`` (validations with an ``alpha`` each) a step keeps: of those better
    than ``before`` by :func:`is_better`, the one with the highest mean reciprocal rank (the
    smaller alpha on a tie, nearer the model that decoded so far); None when none is better."""
    passing = [r for r in grid if is_better(r, before, verdict)]
    return max(passing, key=lambda r: (r["mrr"], -r["alpha"])) if passing else None


def trained_parameters(model: MindEye, params: str) -> list[torch.nn.Parameter]:
    """The parameters a step trains; the others get ``requires_grad=False``."""
    chosen = model.backbone.lin0 if params == "lin0" else model
    keep = {id(p) for p in chosen.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def blend(params, start: list[torch.Tensor], tuned: list[torch.Tensor], alpha: float) -> None:
    """Set ``params`` to ``start + alpha * (tuned - start)`` (alpha 1: the tuned weights)."""
    for p, p0, p1 in zip(params, start, tuned, strict=True):
        p.copy_(p1 if alpha == 1.0 else torch.lerp(p0, p1, alpha))


def _train(
    model: MindEye,
    params: list[torch.nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: FinetuneConfig,
    result: FinetuneResult,
    log,
    *,
    deadline: float,
    rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> bool:
    """The training loop; False when the loss stopped being finite.  The clock is read before
    every batch: a batch starts only when the mean batch so far would end before ``deadline``
    (a ``time.perf_counter()`` value; the first batch needs only that it has not passed).
    ``rehearsal``: (voxels, tokens) of which each batch also carries ``rehearsal_ratio`` times
    its size, in turn from a shuffled order (reshuffled when used up)."""
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=cfg.lr,
    )
    rng = np.random.default_rng(cfg.seed)
    bs = min(cfg.batch_size, len(x))
    n_mix = int(cfg.mixup_pct * cfg.epochs)
    n_extra = 0 if rehearsal is None else max(1, round(cfg.rehearsal_ratio * bs))
    extra_order, extra_at = np.zeros(0, np.int64), 0
    anchor = [p.detach().clone() for p in params] if cfg.l2sp > 0 else []
    anchor_sq = sum(float((p0**2).sum()) for p0 in anchor) or 1.0
    start = time.perf_counter()
    finite, out_of_time = True, False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model.train()
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(x))
            total, done = 0.0, 0
            for b in range(len(x) // bs):
                now = time.perf_counter()
                per_batch = (now - start) / result.batches_run if result.batches_run else 0.0
                if now + per_batch > deadline:
                    out_of_time = True
                    break
                idx = torch.from_numpy(order[b * bs : (b + 1) * bs])
                xb, yb = x[idx], y[idx]
                if n_extra:
                    while extra_at + n_extra > len(extra_order):
                        extra_order = np.concatenate(
                            [extra_order[extra_at:], rng.permutation(len(rehearsal[0]))]
                        )
                        extra_at = 0
                    pick = torch.from_numpy(extra_order[extra_at : extra_at + n_extra])
                    extra_at += n_extra
                    xb = torch.cat([xb, rehearsal[0][pick]])
                    yb = torch.cat([yb, rehearsal[1][pick]])
                if epoch < n_mix:
                    xb, perm, w = mixco(xb, rng=rng)
                    loss = mixco_nce(
                        model(xb)[1], yb, temperature=cfg.mixco_temp, perm=perm, weights=w
                    )
                else:
                    loss = soft_clip_loss(model(xb)[1], yb, temperature=cfg.softclip_temp)
                if anchor:  # L2-SP: the squared drift from the step's start, relative
                    drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, anchor, strict=True))
                    loss = loss + cfg.l2sp * drift / anchor_sq
                if not torch.isfinite(loss):
                    finite = False
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                done += 1
                result.batches_run += 1
            if done:
                result.epochs_run = epoch + 1
                result.losses.append(total / done)
            if not finite or out_of_time:
                break
            if log is not None and (epoch + 1) % 10 == 0:
                log(f"fine-tune epoch {epoch + 1}/{cfg.epochs}: loss {result.losses[-1]:.3f}")
    result.stopped_early = out_of_time
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    result.train_seconds = round(time.perf_counter() - start, 3)
    return finite
