"""Parameter counts of the presets, computed on the meta device (nothing is allocated).

``param_counts`` takes the MindEye1 network presets (:data:`~mindeye_models.presets.PRESETS`),
the MindEye2 ones (:data:`~mindeye_models.presets.MINDEYE2_PRESETS`, network and prior) and the
official MindEye1 parts that have their own files (:data:`PART_PRESETS`: its diffusion prior and
low-level network), so ``mindeye-rt model-info --preset NAME`` can be checked against the papers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mindeye_models.model import MindEye, count_parameters
from mindeye_models.presets import (
    MINDEYE2_PRESETS,
    NSD_SUBJ01_VOXELS,
    PRESETS,
    MindEye2Config,
    MindEyeConfig,
    get_mindeye2_preset,
    get_preset,
)
from rt_base.errors import ConfigError


def _mindeye1_prior() -> nn.Module:
    from mindeye_models.official_prior import MINDEYE1_PRIOR, OfficialDiffusionPrior

    return OfficialDiffusionPrior(MINDEYE1_PRIOR)


def _mindeye1_lowlevel() -> nn.Module:
    from mindeye_models.mindeye1_lowlevel import Voxel2Latents, Voxel2LatentsConfig

    return Voxel2Latents(Voxel2LatentsConfig(n_voxels=NSD_SUBJ01_VOXELS))


# Official MindEye1 parts released as separate files (subject 1's sizes).
PART_PRESETS: dict[str, Callable[[], nn.Module]] = {
    "mindeye1-prior": _mindeye1_prior,
    "mindeye1-lowlevel": _mindeye1_lowlevel,
}


def preset_names() -> list[str]:
    """Every name :func:`param_counts` accepts."""
    return [*PRESETS, *MINDEYE2_PRESETS, *PART_PRESETS]


def _mindeye2_counts(config: MindEye2Config) -> dict[str, int]:
    from mindeye_models.mindeye2 import MindEye2
    from mindeye_models.official_prior import MINDEYE2_PRIOR, OfficialDiffusionPrior

    with torch.device("meta"):
        model = MindEye2(config)
        prior = None
        if config.token_shape == MINDEYE2_PRIOR.token_shape:
            prior = OfficialDiffusionPrior(MINDEYE2_PRIOR)
    counts = {
        "ridge": count_parameters(model.ridge),
        "backbone": count_parameters(model.backbone),
        "clip_proj": count_parameters(model.clip_proj),
        "blurry": count_parameters(model.blurry) if model.blurry is not None else 0,
        "network": count_parameters(model),
    }
    if prior is not None:
        counts["prior"] = count_parameters(prior)
    counts["total"] = counts["network"] + counts.get("prior", 0)
    return counts


def param_counts(
    preset: str | MindEyeConfig | MindEye2Config, n_voxels: int | None = None
) -> dict[str, int]:
    """Parameters per module of a preset (or config).

    Parameters
    ----------
    preset : a name of :func:`preset_names`, a MindEyeConfig or a MindEye2Config.
    n_voxels : overrides the preset's number of voxels (MindEye1 network presets; for
        MindEye2 it replaces every subject's count).

    Returns
    -------
    MindEye1: ``backbone.lin0``, ``backbone.blocks``, ``backbone.lin1``, ``backbone``,
    ``projector`` and ``total``.  MindEye2: ``ridge``, ``backbone`` (mixer blocks and token
    layer), ``clip_proj``, ``blurry``, ``network``, ``prior`` (for 256 x 1664 tokens) and
    ``total``.  A MindEye1 part: ``total``.
    """
    if isinstance(preset, MindEye2Config):
        return _mindeye2_counts(preset)
    if isinstance(preset, str) and preset in MINDEYE2_PRESETS:
        config = get_mindeye2_preset(preset)
        if n_voxels is not None:
            config = get_mindeye2_preset(preset, (n_voxels,) * len(config.n_voxels))
        return _mindeye2_counts(config)
    if isinstance(preset, str) and preset in PART_PRESETS:
        with torch.device("meta"):
            return {"total": count_parameters(PART_PRESETS[preset]())}
    if isinstance(preset, str) and preset not in PRESETS:
        raise ConfigError(f"'preset' must be one of {preset_names()}, got {preset!r}")
    config = preset if isinstance(preset, MindEyeConfig) else get_preset(preset, n_voxels)
    with torch.device("meta"):
        model = MindEye(config)
    bb = model.backbone
    return {
        "backbone.lin0": count_parameters(bb.lin0),
        "backbone.blocks": count_parameters(bb.blocks),
        "backbone.lin1": count_parameters(bb.lin1),
        "backbone": count_parameters(bb),
        "projector": count_parameters(model.projector),
        "total": count_parameters(model),
    }


def format_counts(counts: dict[str, int]) -> str:
    """One line per module, with thousands separators and millions."""
    width = max(len(k) for k in counts)
    return "\n".join(f"{k:<{width}}  {v:>13,}  ({v / 1e6:8.2f} M)" for k, v in counts.items())
