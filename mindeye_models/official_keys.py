"""Key-mapping tables: official MindEye1 / MindEye2 state-dict names -> this project's modules.

Each table is a list of ``(official regex, our replacement)`` rules tried in order; the first
that matches renames the key.  ``IGNORED`` patterns name official tensors that carry no
weights of ours (the diffusion schedule's buffers, which we recompute; the rotary embedding's
fixed frequencies, which every attention layer shares).  A key that no rule and no ignore
pattern covers is reported as unexpected, so a file of another architecture fails by name.

The official names come from the public repositories: MindEye1
(MedARC-AI/fMRI-reconstruction-NSD, ``src/models.py``: ``BrainNetwork``,
``BrainDiffusionPrior`` with ``VersatileDiffusionPriorNetwork``,
``Voxel2StableDiffusionModel``) and MindEye2 (MedARC-AI/MindEyeV2, ``src/Train.ipynb``: a
``MindEyeModule`` holding ``ridge`` (``RidgeRegression``), ``backbone`` (``BrainNetwork`` with
mixer blocks) and ``diffusion_prior``).
"""

from __future__ import annotations

import re

import torch

Rule = tuple[str, str]

# MindEye1 voxel2clip BrainNetwork -> mindeye_models.model.MindEye.
MINDEYE1_VOXEL2CLIP: list[Rule] = [
    (r"^lin0\.", "backbone.lin0."),
    (r"^mlp\.", "backbone.blocks."),
    (r"^lin1\.", "backbone.lin1."),
    (r"^projector\.", "projector."),
]

# The dalle2-style prior network inside MindEye1's and MindEye2's BrainDiffusionPrior ->
# mindeye_models.official_prior.OfficialPriorNetwork (names kept, only the prefix changes).
PRIOR_NETWORK: list[Rule] = [
    (r"^net\.", ""),
]

# MindEye1 low-level Voxel2StableDiffusionModel -> mindeye1_lowlevel.Voxel2Latents.
MINDEYE1_LOWLEVEL: list[Rule] = [
    (r"^(lin0|mlp|lin1|norm|upsampler|maps_projector)\.", r"\1."),
]

# MindEye2 MindEyeModule -> mindeye_models.mindeye2.MindEye2 (+ its prior).
MINDEYE2: list[Rule] = [
    (r"^ridge\.linears\.", "ridge.linears."),
    (r"^backbone\.(mixer_blocks1|mixer_blocks2|backbone_linear)\.", r"backbone.\1."),
    (r"^backbone\.clip_proj\.", "clip_proj."),
    (r"^backbone\.blin1\.", "blurry.lin."),
    (r"^backbone\.bnorm\.", "blurry.norm."),
    (r"^backbone\.bupsampler\.", "blurry.upsampler."),
    (r"^backbone\.b_maps_projector\.", "blurry.maps_projector."),
    (r"^diffusion_prior\.net\.", "prior.net."),
]

IGNORED: list[str] = [
    r"(^|\.)noise_scheduler\.",  # betas, alphas_cumprod ...: recomputed from the schedule
    r"\.rotary_emb\.freqs$",  # fixed RoPE frequencies (not trained), recomputed
]


def rename(state: dict[str, torch.Tensor], rules: list[Rule]) -> tuple[dict, list[str]]:
    """Apply ``rules`` to the keys of ``state``.

    Returns
    -------
    renamed : {our key: tensor} for the keys a rule matched.
    unmatched : official keys that no rule and no :data:`IGNORED` pattern covers.
    """
    compiled = [(re.compile(pattern), new) for pattern, new in rules]
    ignored = [re.compile(p) for p in IGNORED]
    renamed: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, value in state.items():
        if any(p.search(key) for p in ignored):
            continue
        for pattern, new in compiled:
            if pattern.search(key):
                renamed[pattern.sub(new, key, count=1)] = value
                break
        else:
            unmatched.append(key)
    return renamed, sorted(unmatched)


# diffusers renamed the VAE decoder's mid-block attention in 2023; older files (MindEye1's) use
# the first names.  Same shapes, so renaming is enough.
_LEGACY_DECODER_ATTENTION = (
    (re.compile(r"(\.mid_block\.attentions\.\d+\.)query\."), r"\1to_q."),
    (re.compile(r"(\.mid_block\.attentions\.\d+\.)key\."), r"\1to_k."),
    (re.compile(r"(\.mid_block\.attentions\.\d+\.)value\."), r"\1to_v."),
    (re.compile(r"(\.mid_block\.attentions\.\d+\.)proj_attn\."), r"\1to_out.0."),
)


def modernize_decoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the pre-2023 diffusers decoder attention keys to today's names."""
    out = {}
    for key, value in state.items():
        for pattern, new in _LEGACY_DECODER_ATTENTION:
            key = pattern.sub(new, key)
        out[key] = value
    return out


def official_name(key: str, rules: list[Rule]) -> str:
    """The official name of our ``key`` under ``rules`` (for error messages).

    Prefix rules are inverted literally; rules that keep the matched name (``\\1``) leave it.
    """
    for pattern, new in rules:
        if "\\" in new:
            continue
        if new and key.startswith(new):
            literal = pattern.removeprefix("^").replace("\\", "")
            return literal + key[len(new) :]
    return key


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with it removed (e.g. ``voxel2clip.`` of a prior file)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def drop_wrapper_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``module.`` prefix that DistributedDataParallel or DeepSpeed put on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state
