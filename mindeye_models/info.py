"""Parameter counts of the presets, computed on the meta device (nothing is allocated)."""

from __future__ import annotations

import torch

from mindeye_models.model import MindEye, count_parameters
from mindeye_models.presets import MindEyeConfig, get_preset


def param_counts(preset: str | MindEyeConfig, n_voxels: int | None = None) -> dict[str, int]:
    """Parameters per module of a preset (or config).

    Parameters
    ----------
    preset : preset name (see :data:`mindeye_models.presets.PRESETS`) or a MindEyeConfig.
    n_voxels : overrides the preset's number of voxels.

    Returns
    -------
    dict with ``backbone.lin0``, ``backbone.blocks``, ``backbone.lin1``, ``backbone``,
    ``projector`` and ``total``.
    """
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
