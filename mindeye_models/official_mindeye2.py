"""Official MindEye2 checkpoints -> :class:`MindEye2` and its :class:`OfficialDiffusionPrior`.

MindEye2 (MedARC-AI/MindEyeV2) saves one ``MindEyeModule`` per run (``train_logs/NAME/
last.pth``: ``{"model_state_dict": ...}``, or a DeepSpeed ZeRO folder when saved in that form)
holding ``ridge.linears.S.*`` (one ridge per subject), ``backbone.*`` (mixer blocks, the token
layer, ``clip_proj`` and the blurry head ``blin1``/``bnorm``/``bupsampler``/
``b_maps_projector``) and ``diffusion_prior.*``.  Sizes are read off the shapes (hidden width,
blocks, subjects and their voxel counts, blurry head or not), the keys are mapped with
:data:`mindeye_models.official_keys.MINDEYE2`, and a file that does not fit names its missing
and unexpected keys and shape mismatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mindeye_models.embedder import EMBEDDERS
from mindeye_models.mindeye2 import MindEye2
from mindeye_models.official_keys import MINDEYE2, modernize_decoder_keys, official_name, rename
from mindeye_models.official_mindeye1 import load_official_prior
from mindeye_models.official_prior import OfficialDiffusionPrior
from mindeye_models.official_source import read_official_state
from mindeye_models.presets import MindEye2Config
from mindeye_models.state_dicts import StateDiff, load_exactly
from rt_base.errors import ConfigError, WeightsError

_FIT = "pass an unmodified MindEye2 checkpoint (train_logs/NAME/last.pth or its ZeRO folder)"


@dataclass
class OfficialMindEye2:
    """A loaded MindEye2: the network and, when the file has one, its diffusion prior."""

    model: MindEye2
    prior: OfficialDiffusionPrior | None


def mindeye2_config_from_state(
    state: dict[str, torch.Tensor], embedder: str | None = None
) -> MindEye2Config:
    """The :class:`MindEye2Config` of an official state dict (keys as in the file)."""
    needed = ("backbone.backbone_linear.weight", "backbone.clip_proj.0.weight")
    missing = [k for k in needed if k not in state]
    ridges = sorted(
        {int(k.split(".")[2]) for k in state if k.startswith("ridge.linears.")},
    )
    if missing or not ridges:
        raise WeightsError(
            f"the file holds no MindEye2 network (missing {missing or ['ridge.linears.*']}): {_FIT}"
        )
    if ridges != list(range(len(ridges))):
        raise WeightsError(f"the ridges are numbered {ridges}, not 0..{len(ridges) - 1}: {_FIT}")
    n_voxels = tuple(state[f"ridge.linears.{i}.weight"].shape[1] for i in ridges)
    width = state["ridge.linears.0.weight"].shape[0]
    seq = state.get("backbone.mixer_blocks2.0.0.weight")
    seq_len = 1 if seq is None else seq.shape[0]
    clip_dim = state["backbone.clip_proj.0.weight"].shape[0]
    out_dim = state["backbone.backbone_linear.weight"].shape[0]
    if out_dim % clip_dim or width % seq_len:
        raise WeightsError(
            f"backbone_linear outputs {out_dim} values for tokens of width {clip_dim} and the "
            f"ridge {width} for a sequence of {seq_len}: not a MindEye2 layout; {_FIT}"
        )
    n_tokens = out_dim // clip_dim
    if embedder is None:
        matches = [n for n, c in EMBEDDERS.items() if c.token_shape == (n_tokens, clip_dim)]
        if not matches:
            raise WeightsError(
                f"no known embedder makes {n_tokens} x {clip_dim} tokens (the checkpoint's "
                f"target space); known: { {n: c.token_shape for n, c in EMBEDDERS.items()} }"
            )
        embedder = matches[0]
    try:
        return MindEye2Config(
            n_voxels=n_voxels,
            hidden=width // seq_len,
            n_blocks=len(
                {k.split(".")[2] for k in state if k.startswith("backbone.mixer_blocks1.")}
            ),
            seq_len=seq_len,
            n_tokens=n_tokens,
            clip_dim=clip_dim,
            blurry=any(k.startswith("backbone.blin1.") for k in state),
            embedder=embedder,
            name="mindeye2-official",
        )
    except ConfigError as err:
        raise WeightsError(f"the checkpoint does not fit a MindEye2 config: {err}") from err


def load_official_mindeye2(
    source: str | Path | dict[str, Any],
    *,
    embedder: str | None = None,
    with_prior: bool = True,
    device: str = "cpu",
) -> OfficialMindEye2:
    """Load an official MindEye2 checkpoint.

    Parameters
    ----------
    source : ``last.pth`` (or ``.safetensors``), a DeepSpeed ZeRO checkpoint folder, or a
        state dict (optionally under ``model_state_dict``).
    embedder : the embedder of the targets; None picks the one whose token shape matches
        (``ViT-bigG-14`` for 256 x 1664).
    with_prior : also load ``diffusion_prior.*`` (when the file has it).
    device : torch device string.

    Returns
    -------
    OfficialMindEye2 with ``model`` (eval mode) and ``prior`` (None when absent or not asked).
    """
    state = modernize_decoder_keys(read_official_state(source, "MindEye2 checkpoint"))
    config = mindeye2_config_from_state(state, embedder)
    prior_keys = {k for k in state if k.startswith("diffusion_prior.")}
    network = {k: v for k, v in state.items() if k not in prior_keys}
    renamed, unmatched = rename(network, MINDEYE2)
    if unmatched:
        raise WeightsError(
            "the MindEye2 checkpoint holds keys of no known official layout: "
            f"{StateDiff(unexpected=unmatched).describe()}; {_FIT}"
        )
    model = MindEye2(config)
    load_exactly(
        model,
        renamed,
        "the official MindEye2 weights",
        _FIT,
        name=lambda key: official_name(key, MINDEYE2),
    )
    prior = None
    if with_prior and prior_keys:
        part = {k: state[k] for k in prior_keys}
        prior = load_official_prior(part, "diffusion_prior.", "the official MindEye2 prior", device)
    return OfficialMindEye2(model=model.to(device).eval(), prior=prior)
