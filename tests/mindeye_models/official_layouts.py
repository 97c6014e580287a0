"""State dicts in the official MindEye1 / MindEye2 layouts, written out key by key.

The names and shapes are those of the public repositories' modules (MedARC-AI/MindEyeV2
``BrainNetwork``/``RidgeRegression``/``PriorNetwork``; MedARC-AI/fMRI-reconstruction-NSD
``BrainNetwork``/``VersatileDiffusionPriorNetwork``/``Voxel2StableDiffusionModel``; the
dalle2_pytorch prior transformer), listed here independently of our modules so that a renamed
or reshaped module of ours fails these tests.  ``device="meta"`` gives full-size layouts
without memory.
"""

from __future__ import annotations

import torch


def _t(shape, device, gen, scale=0.05):
    if device == "meta":
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen) * scale


def _decoder_state(prefix, in_ch, channels, device):
    """diffusers' VAE Decoder keys (the official upsamplers are that class)."""
    from diffusers.models.autoencoders.vae import Decoder

    with torch.device("meta"):
        dec = Decoder(
            in_channels=in_ch,
            out_channels=4,
            up_block_types=["UpDecoderBlock2D"] * len(channels),
            block_out_channels=list(channels),
            layers_per_block=1,
        )
    return {f"{prefix}{k}": tuple(v.shape) for k, v in dec.state_dict().items()}


def _ln(p, dim):
    return {f"{p}.weight": (dim,), f"{p}.bias": (dim,)}


def _lin(p, i, o, bias=True):
    out = {f"{p}.weight": (o, i)}
    if bias:
        out[f"{p}.bias"] = (o,)
    return out


def prior_shapes(prefix, tokens, dim, heads, depth, ff_mult=4, timesteps=100):
    """Names -> shapes of a BrainDiffusionPrior (net + noise scheduler buffers)."""
    dh = dim // heads
    s = {
        f"{prefix}net.learned_query": (tokens, dim),
        f"{prefix}net.null_brain_embeds": (tokens, dim),
        f"{prefix}net.null_image_embed": (tokens, dim),
        f"{prefix}net.causal_transformer.rel_pos_bias.relative_attention_bias.weight": (32, heads),
        f"{prefix}net.causal_transformer.norm.g": (dim,),
        f"{prefix}net.causal_transformer.project_out.weight": (dim, dim),
    }
    t = f"{prefix}net.to_time_embeds.0.1.net"
    s.update(_lin(f"{t}.0.0", dim, 2 * dim))
    s.update(_lin(f"{t}.1.0", 2 * dim, 2 * dim))
    s.update(_lin(f"{t}.2", 2 * dim, dim))
    for i in range(depth):
        a = f"{prefix}net.causal_transformer.layers.{i}.0"
        f = f"{prefix}net.causal_transformer.layers.{i}.1"
        s.update(
            {
                f"{a}.norm.g": (dim,),
                f"{a}.null_kv": (2, dh),
                f"{a}.to_q.weight": (heads * dh, dim),
                f"{a}.to_kv.weight": (2 * dh, dim),
                f"{a}.rotary_emb.freqs": (min(32, dh) // 2,),
                f"{a}.to_out.0.weight": (dim, heads * dh),
                f"{a}.to_out.1.g": (dim,),
                f"{f}.0.g": (dim,),
                f"{f}.1.weight": (2 * ff_mult * dim, dim),
                f"{f}.5.weight": (dim, ff_mult * dim),
            }
        )
    for name in (
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "p2_loss_weight",
    ):  # fmt: skip
        s[f"{prefix}noise_scheduler.{name}"] = (timesteps,)
    return s


def mindeye2_shapes(voxels, hidden, blocks, tokens, clip, blurry=True, prior=None, seq=1):
    """Names -> shapes of MindEye2's MindEyeModule (ridge, backbone, diffusion_prior)."""
    s = {}
    for i, v in enumerate(voxels):
        s.update(_lin(f"ridge.linears.{i}", v, hidden * seq))
    for i in range(blocks):
        s.update(_ln(f"backbone.mixer_blocks1.{i}.0", hidden))
        s.update(_lin(f"backbone.mixer_blocks1.{i}.1.0", hidden, hidden))
        s.update(_lin(f"backbone.mixer_blocks1.{i}.1.3", hidden, hidden))
        s.update(_ln(f"backbone.mixer_blocks2.{i}.0", seq))
        s.update(_lin(f"backbone.mixer_blocks2.{i}.1.0", seq, seq))
        s.update(_lin(f"backbone.mixer_blocks2.{i}.1.3", seq, seq))
    s.update(_lin("backbone.backbone_linear", hidden * seq, tokens * clip))
    for j in (0, 3, 6):
        s.update(_ln(f"backbone.clip_proj.{j}", clip))
    for j in (2, 5, 8):
        s.update(_lin(f"backbone.clip_proj.{j}", clip, clip))
    if blurry:
        s.update(_lin("backbone.blin1", hidden * seq, 4 * 28 * 28))
        s.update(_ln("backbone.bnorm", 64))
        s.update(_decoder_state("backbone.bupsampler.", 64, (32, 64, 128), "meta"))
        s["backbone.b_maps_projector.0.weight"] = (512, 64, 1, 1)
        s.update(_ln("backbone.b_maps_projector.1", 512))
        s["backbone.b_maps_projector.3.weight"] = (512, 512, 1, 1)
        s.update(_ln("backbone.b_maps_projector.4", 512))
        s["backbone.b_maps_projector.6.weight"] = (512, 512, 1, 1)
        s["backbone.b_maps_projector.6.bias"] = (512,)
    if prior is not None:
        s.update(prior_shapes("diffusion_prior.", tokens, clip, **prior))
    return s


def mindeye1_voxel2clip_shapes(voxels, hidden, blocks, tokens, clip, proj=2048, prefix=""):
    s = {}
    s.update(_lin(f"{prefix}lin0.0", voxels, hidden))
    s.update(_ln(f"{prefix}lin0.1", hidden))
    for i in range(blocks):
        s.update(_lin(f"{prefix}mlp.{i}.0", hidden, hidden))
        s.update(_ln(f"{prefix}mlp.{i}.1", hidden))
    s.update(_lin(f"{prefix}lin1", hidden, tokens * clip))
    s.update(_ln(f"{prefix}projector.0", clip))
    s.update(_lin(f"{prefix}projector.2", clip, proj))
    s.update(_ln(f"{prefix}projector.3", proj))
    s.update(_lin(f"{prefix}projector.5", proj, proj))
    s.update(_ln(f"{prefix}projector.6", proj))
    s.update(_lin(f"{prefix}projector.8", proj, clip))
    return s


def mindeye1_lowlevel_shapes(voxels, hidden, blocks, with_maps=False):
    s = _lin("lin0.0", voxels, hidden, bias=False)
    s.update(_ln("lin0.1", hidden))
    for i in range(blocks):
        s.update(_lin(f"mlp.{i}.0", hidden, hidden, bias=False))
        s.update(_ln(f"mlp.{i}.1", hidden))
    s.update(_lin("lin1", hidden, 16384, bias=False))
    s.update(_ln("norm", 64))
    s.update(_decoder_state("upsampler.", 64, (64, 128, 256), "meta"))
    if with_maps:
        s["maps_projector.0.weight"] = (512, 64, 1, 1)
        s.update(_ln("maps_projector.1", 512))
        s["maps_projector.3.weight"] = (512, 512, 1, 1)
        s.update(_ln("maps_projector.4", 512))
        s["maps_projector.6.weight"] = (512, 512, 1, 1)
        s["maps_projector.6.bias"] = (512,)
    return s


def materialize(shapes, device="cpu", seed=0):
    """Random tensors (norm weights near 1) for a names -> shapes table."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        t = _t(shape, device, gen)
        if device != "meta" and (k.endswith(".g") or ("norm" in k and k.endswith("weight"))):
            t = t + 1.0
        out[k] = t
    return out
