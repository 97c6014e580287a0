"""Official MindEye1 checkpoints -> this project's modules.

MindEye1 (MedARC-AI/fMRI-reconstruction-NSD) released, per subject, the voxel2clip network
inside a diffusion-prior checkpoint (``BrainDiffusionPrior``: keys ``voxel2clip.*``, ``net.*``
and the schedule's ``noise_scheduler.*``), and the low-level ``Voxel2StableDiffusionModel``.
All three parts load from those files (or from a voxel2clip-only ``BrainNetwork`` file)
through the tables of :mod:`mindeye_models.official_keys`; sizes are read off the shapes, and
a file that does not fit names its missing and unexpected keys and shape mismatches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mindeye_models.embedder import EMBEDDERS
from mindeye_models.mindeye1_lowlevel import Voxel2Latents, Voxel2LatentsConfig
from mindeye_models.model import MindEye
from mindeye_models.official_keys import (
    MINDEYE1_LOWLEVEL,
    MINDEYE1_VOXEL2CLIP,
    PRIOR_NETWORK,
    modernize_decoder_keys,
    official_name,
    rename,
    strip_prefix,
)
from mindeye_models.official_prior import OfficialDiffusionPrior
from mindeye_models.official_source import read_official_state
from mindeye_models.presets import MindEyeConfig
from mindeye_models.prior import PriorConfig
from mindeye_models.state_dicts import StateDiff, load_exactly
from rt_base.errors import ConfigError, WeightsError

Source = str | Path | dict[str, Any]
_FIT = "pass the matching official file (same subject and release), unmodified"


def _voxel2clip_state(source: Source) -> dict[str, torch.Tensor]:
    state = read_official_state(source, "MindEye checkpoint")
    if any(k.startswith("voxel2clip.") for k in state):  # a BrainDiffusionPrior checkpoint
        state = strip_prefix(state, "voxel2clip.")
    if "lin0.0.weight" not in state or "lin1.weight" not in state:
        raise WeightsError(
            "the file holds no MindEye1 voxel2clip tensors (expected keys 'lin0.*', 'mlp.*', "
            "'lin1.*', 'projector.*'): pass the BrainNetwork or BrainDiffusionPrior checkpoint"
        )
    if "lin0.1.running_mean" in state or "lin0.2.weight" in state:
        raise WeightsError(
            "the file is a BatchNorm or activation-first BrainNetwork variant; only the "
            "paper's LayerNorm-then-GELU network (norm_type='ln', act_first=False) is supported"
        )
    if "projector.0.weight" not in state:
        raise WeightsError("the file has no projector (use_projector=False): not supported")
    return state


def load_official_mindeye1(
    source: Source, *, embedder: str | None = None, device: str = "cpu"
) -> MindEye:
    """Load an official MindEye1 voxel2clip network into :class:`MindEye`.

    Accepts a ``BrainNetwork`` state dict (keys ``lin0.*``, ``mlp.*``, ``lin1.*``,
    ``projector.*``), the same under ``model_state_dict`` or with a ``voxel2clip.`` prefix (a
    ``BrainDiffusionPrior`` checkpoint; its prior is :func:`load_official_mindeye1_prior`'s),
    as a file, a DeepSpeed ZeRO folder or a dict.  The official inputs were z-scored upstream,
    so the input normalization is left at identity.

    Parameters
    ----------
    source : path to a ``.pth``/``.pt``/``.safetensors`` file or ZeRO folder, or a state dict.
    embedder : name of the embedder of the targets; None picks the one whose token shape
        matches (``ViT-L-14`` for 257 x 768).
    device : torch device string.
    """
    state = _voxel2clip_state(source)
    n_voxels, hidden = state["lin0.0.weight"].shape[1], state["lin0.0.weight"].shape[0]
    n_blocks = len({k.split(".")[1] for k in state if k.startswith("mlp.")})
    clip_dim = state["projector.0.weight"].shape[0]
    out_dim = state["lin1.weight"].shape[0]
    if out_dim % clip_dim:
        raise WeightsError(f"lin1 outputs {out_dim} values, not a multiple of clip_dim {clip_dim}")
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
        config = MindEyeConfig(
            n_voxels=n_voxels,
            hidden=hidden,
            n_blocks=n_blocks,
            n_tokens=n_tokens,
            clip_dim=clip_dim,
            proj_hidden=state["projector.2.weight"].shape[0],
            embedder=embedder,
            name="mindeye1-official",
        )
    except ConfigError as err:
        raise WeightsError(f"the official checkpoint does not fit a MindEye config: {err}") from err
    renamed, unmatched = rename(state, MINDEYE1_VOXEL2CLIP)
    model = MindEye(config)
    renamed["input_mean"] = model.input_mean.clone()
    renamed["input_std"] = model.input_std.clone()
    _load(
        model,
        renamed,
        unmatched,
        "the official MindEye1 voxel2clip weights",
        name=lambda key: official_name(key, MINDEYE1_VOXEL2CLIP),
    )
    return model.to(device).eval()


def _load(
    module: torch.nn.Module, renamed: dict, unmatched: list[str], where: str, name=str
) -> None:
    if unmatched:
        raise WeightsError(
            f"{where} hold keys of no known official layout: "
            f"{StateDiff(unexpected=unmatched).describe()}; {_FIT}"
        )
    load_exactly(module, renamed, where, _FIT, name=name)


def prior_config_from_state(net: dict[str, torch.Tensor], name: str) -> PriorConfig:
    """The sizes of an official prior network, read off its tensors (keys without ``net.``)."""
    needed = ("learned_query", "causal_transformer.rel_pos_bias.relative_attention_bias.weight")
    missing = [k for k in needed if k not in net]
    if missing:
        raise WeightsError(
            f"no official diffusion prior in the file (missing {missing}): pass a "
            "BrainDiffusionPrior checkpoint (keys 'net.*')"
        )
    n_tokens, dim = net["learned_query"].shape
    heads = net["causal_transformer.rel_pos_bias.relative_attention_bias.weight"].shape[1]
    depth = len({k.split(".")[2] for k in net if k.startswith("causal_transformer.layers.")})
    ff_in = net.get("causal_transformer.layers.0.1.1.weight")
    ff_mult = ff_in.shape[0] // (2 * dim) if ff_in is not None else 4
    try:
        return PriorConfig(
            n_tokens, dim, dim=dim, depth=depth, heads=heads, ff_mult=ff_mult, name=name
        )
    except ConfigError as err:
        raise WeightsError(f"the official prior's sizes do not fit a prior config: {err}") from err


def load_official_prior(
    state: dict[str, torch.Tensor], prefix: str, where: str, device: str
) -> OfficialDiffusionPrior:
    """The :class:`OfficialDiffusionPrior` under ``prefix`` (``""`` or ``diffusion_prior.``)."""
    part = strip_prefix(state, prefix) if prefix else state
    part = {k: v for k, v in part.items() if not k.startswith("voxel2clip.")}
    config = prior_config_from_state(strip_prefix(part, "net."), where)
    renamed, unmatched = rename(part, PRIOR_NETWORK)
    renamed = {f"net.{k}": v for k, v in renamed.items()}
    prior = OfficialDiffusionPrior(config)
    renamed["data_scale"] = prior.data_scale.clone()
    _load(prior, renamed, unmatched, where, name=lambda key: prefix + key)
    return prior.to(device).eval()


def load_official_mindeye1_prior(source: Source, *, device: str = "cpu") -> OfficialDiffusionPrior:
    """Load the diffusion prior of an official MindEye1 ``BrainDiffusionPrior`` checkpoint.

    Sizes are read off the shapes (the release: 257 x 768 tokens, 6 layers, 12 heads).
    """
    state = read_official_state(source, "MindEye1 prior checkpoint")
    return load_official_prior(state, "", "the official MindEye1 prior", device)


def load_official_mindeye1_lowlevel(source: Source, *, device: str = "cpu") -> Voxel2Latents:
    """Load an official MindEye1 ``Voxel2StableDiffusionModel`` (its "4x" upsampler variant).

    Sizes and the presence of the maps projector are read off the shapes.
    """
    state = modernize_decoder_keys(read_official_state(source, "MindEye1 low-level checkpoint"))
    w0 = state.get("lin0.0.weight")
    if w0 is None or "lin0.0.bias" in state or not any(k.startswith("upsampler.") for k in state):
        raise WeightsError(
            "the file holds no MindEye1 low-level network (expected 'lin0.0.weight' without a "
            "bias, 'mlp.*', 'lin1.weight', 'norm.*', 'upsampler.*'): pass the "
            "Voxel2StableDiffusionModel checkpoint"
        )
    norm = state.get("norm.weight")
    if norm is None or norm.shape[0] != 64:
        raise WeightsError(
            "only the released '4x' low-level variant (GroupNorm over 64 channels at 16 x 16) "
            f"is supported; this file's norm has {None if norm is None else norm.shape[0]} channels"
        )
    config = Voxel2LatentsConfig(
        n_voxels=w0.shape[1],
        hidden=w0.shape[0],
        n_blocks=len({k.split(".")[1] for k in state if k.startswith("mlp.")}),
        with_maps=any(k.startswith("maps_projector.") for k in state),
    )
    renamed, unmatched = rename(state, MINDEYE1_LOWLEVEL)
    model = Voxel2Latents(config)
    _load(model, renamed, unmatched, "the official MindEye1 low-level weights")
    return model.to(device).eval()
