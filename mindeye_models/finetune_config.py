"""Options of a fine-tune step (:mod:`mindeye_models.finetune`), without torch: the stream's
configuration checks them before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rt_base.checks import check_choice, check_number, check_torch_device
from rt_base.errors import ConfigError

#: which parameters a step trains: the input layer (``backbone.lin0``) or the whole network
PARAMS = ("lin0", "all")
#: which trials validate a step: the last ones, or every trial of the last ones' images
HOLDOUTS = ("trials", "images")
#: what a step's verdict compares (:func:`mindeye_models.finetune.is_better`)
VERDICTS = ("top1-rank", "mrr")


@dataclass(frozen=True)
class FinetuneConfig:
    """Options of :func:`finetune_step`.

    Parameters
    ----------
    params : ``lin0`` (the per-subject input layer: its Linear and LayerNorm) or ``all``.
    epochs : passes over the training trials (fewer when ``budget_s`` runs out first).
    batch_size : trials per step (at most the training trials).
    lr : AdamW learning rate (constant).
    weight_decay : AdamW weight decay of weight matrices.
    mixup_pct : fraction of the epochs trained with BiMixCo + voxel mixup; SoftCLIP after.
    mixco_temp, softclip_temp : the losses' temperatures (MindEye1: 0.006; 0.0075 at the end).
    val_fraction : the last fraction of the trials (decode order) held out for validation.
    holdout : ``images`` (every trial showing an image of those last trials is held out,
        earlier showings too: validation is on images new to the fine-tuned model, as the next
        run's first showings are) or ``trials`` (just the last trials; an image shown before
        may then have been trained on, which favours memorizing).
    min_train, min_val : fewer trials than this and the step is skipped.
    budget_s : seconds of a step at most, its validations included: the clock is read before
        every batch, and a batch starts only when it is expected to end in time to leave room
        for the validations after training (so fewer than ``epochs`` may run, the last one
        partly).
    alphas : the weights tried after training, as points between the starting (0) and the
        fine-tuned (1) parameters: ``theta0 + alpha * (theta1 - theta0)``.  Each is validated;
        of those that pass the verdict, the one with the best held-out mean reciprocal rank
        (the smaller alpha on a tie) is the step's result; none passing keeps the current
        model.  ``(1.0,)``: the fine-tuned weights only.  The default grid was chosen on the
        dev subjects of ``docs/finetune_protocol.md`` (README, "Fine-tuning between runs").
    verdict : ``top1-rank`` (top-1 not lower, mean rank not higher, one strictly better) or
        ``mrr`` (mean reciprocal rank higher and top-1 not lower).
    rehearsal_ratio : with rehearsal data (``finetune_step``'s ``rehearsal``: the trials the
        starting model was trained on), each batch of ``batch_size`` session trials also
        carries ``round(rehearsal_ratio * batch_size)`` rehearsal trials, drawn in turn from a
        shuffled order (so the batches per epoch, and the session trials' updates, are as
        without; a batch costs about ``1 + rehearsal_ratio`` times as much).
    l2sp : weight of the L2-SP penalty toward the step's starting weights θ0, added to the
        loss as ``l2sp * ||θ - θ0||² / ||θ0||²`` over the trained parameters (0: none).
    seed : batch order, mixup and dropout.
    device : torch device.
    """

    params: str = "lin0"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    mixup_pct: float = 0.33
    mixco_temp: float = 0.006
    softclip_temp: float = 0.0075
    val_fraction: float = 0.2
    holdout: str = "images"
    min_train: int = 8
    min_val: int = 2
    budget_s: float = 60.0
    alphas: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    verdict: str = "top1-rank"
    rehearsal_ratio: float = 1.0
    l2sp: float = 0.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice(self.params, "params", PARAMS)
        check_number(self.epochs, "epochs", minimum=1, integer=True)
        check_number(self.batch_size, "batch_size", minimum=2, integer=True)
        check_number(self.lr, "lr", minimum=0, strict_min=True)
        check_number(self.weight_decay, "weight_decay", minimum=0)
        check_number(self.mixup_pct, "mixup_pct", minimum=0, maximum=1)
        for key in ("mixco_temp", "softclip_temp"):
            check_number(getattr(self, key), key, minimum=0, strict_min=True)
        check_number(self.val_fraction, "val_fraction", minimum=0, maximum=0.9, strict_min=True)
        check_choice(self.holdout, "holdout", HOLDOUTS)
        check_number(self.min_train, "min_train", minimum=2, integer=True)
        check_number(self.min_val, "min_val", minimum=1, integer=True)
        check_number(self.budget_s, "budget_s", minimum=0, strict_min=True, unit="seconds")
        object.__setattr__(self, "alphas", check_alphas(self.alphas))
        check_choice(self.verdict, "verdict", VERDICTS)
        check_number(self.rehearsal_ratio, "rehearsal_ratio", minimum=0, strict_min=True, maximum=8)
        check_number(self.l2sp, "l2sp", minimum=0, maximum=1e6)
        check_number(self.seed, "seed", minimum=0, integer=True)
        check_torch_device(self.device, "device")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """Build from a dict (a job file); unknown keys raise ConfigError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown fine-tune options {unknown}; known: {sorted(known)}")
        return cls(**data)


def check_alphas(value: Any, name: str = "alphas") -> tuple[float, ...]:
    """A non-empty list of interpolation weights in (0, 1], sorted and without repeats; a
    string like ``"0.25,0.5,1"`` is read too."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(
            f"'{name}' must be a non-empty list of weights in (0, 1] like 0.25,0.5,1, got {value!r}"
        )
    alphas = [check_number(a, name, minimum=0, strict_min=True, maximum=1) for a in value]
    return tuple(sorted({float(a) for a in alphas}))
