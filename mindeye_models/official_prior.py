"""The official MindEye diffusion prior network, so that released prior weights can be used.

Both MindEyes refine the backbone's tokens with a DALL-E-2 prior (the ``dalle2_pytorch``
library's ``DiffusionPrior``, with MindEye's own network: ``VersatileDiffusionPriorNetwork`` in
MindEye1, ``PriorNetwork`` in MindEye2, the same design).  Its transformer differs from
:class:`mindeye_models.prior.PriorNetwork` in every detail that touches the weights:
single-head ("multi-query") keys and values with a learned null key/value, cosine-similarity
attention at a fixed scale of 16, T5 relative position buckets, rotary embeddings on the first
32 channels, SwiGLU feed-forward layers, bias-free gain-only layer norms, no projection in or
out of the token width, and a sinusoidal-time MLP.  This module is an independent
implementation of that design whose parameter names follow the official state dicts (see
:mod:`mindeye_models.official_keys`), so the weights load without any reshaping.

Sizes (``PriorConfig``; ``dim`` is the token width, ``dim // heads`` the head width):
MindEye1 257 x 768, 6 layers, 12 heads of 64; MindEye2 256 x 1664, 6 layers, 32 heads of 52.
Diffusion, loss and sampling are :class:`mindeye_models.prior.DiffusionPrior`'s (x0
prediction, 100 cosine timesteps, classifier-free guidance); with ``steps=100, eta=1`` its
sampler takes the official DDPM posterior steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mindeye_models.prior import DiffusionPrior, PriorConfig, cosine_alphas_cumprod
from rt_base.errors import ConfigError

_ATTN_SCALE = 16.0  # cosine-similarity logits are scaled by this
_ROTARY_DIM = 32  # channels of each head that carry the rotary embedding (at most)
_BUCKETS, _MAX_DISTANCE = 32, 128  # relative position buckets (T5 style)


class GainNorm(nn.Module):
    """Layer norm with a gain ``g`` and no bias; ``stable`` divides by the row maximum first."""

    def __init__(self, dim: int, stable: bool = False) -> None:
        super().__init__()
        self.stable = stable
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stable:
            x = x / x.amax(dim=-1, keepdim=True).detach()
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.g


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation of interleaved pairs."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``angles.shape[-1]`` channels of ``x`` (sequence on dim -2)."""
    r = angles.shape[-1]
    head, tail = x[..., :r], x[..., r:]
    head = head * angles.cos() + _rotate_pairs(head) * angles.sin()
    return torch.cat((head, tail), dim=-1)


def relative_buckets(n_query: int, n_key: int, device: torch.device) -> torch.Tensor:
    """(n_query, n_key) bucket of ``query - key`` (0 for keys at or after the query)."""
    q = torch.arange(n_query, device=device)[:, None]
    k = torch.arange(n_key, device=device)[None, :]
    dist = (q - k).clamp_min(0)
    exact = _BUCKETS // 2
    scaled = torch.log(dist.clamp_min(1).float() / exact) / math.log(_MAX_DISTANCE / exact)
    large = (exact + (scaled * (_BUCKETS - exact)).long()).clamp_max(_BUCKETS - 1)
    return torch.where(dist < exact, dist, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias of each relative position bucket: ``(heads, n, n + 1)``."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.relative_attention_bias = nn.Embedding(_BUCKETS, heads)

    def forward(self, n: int, device: torch.device) -> torch.Tensor:
        return self.relative_attention_bias(relative_buckets(n, n + 1, device)).permute(2, 0, 1)


class MultiQueryAttention(nn.Module):
    """Pre-norm attention: ``heads`` queries, one shared key/value head, a learned null key."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = GainNorm(dim)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False), GainNorm(dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        q = self.to_q(x).view(b, n, self.heads, self.dim_head).transpose(1, 2)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        null_k, null_v = (t.expand(b, 1, self.dim_head).to(x.dtype) for t in self.null_kv)
        k, v = torch.cat((null_k, k), dim=1), torch.cat((null_v, v), dim=1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        sim = torch.einsum("bhid,bjd->bhij", q, k) * _ATTN_SCALE + bias
        attn = self.dropout(sim.softmax(dim=-1, dtype=torch.float32).to(sim.dtype))
        out = torch.einsum("bhij,bjd->bhid", attn, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class SwiGLU(nn.Module):
    """``x * silu(gate)`` of the two halves of the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.silu(gate)


def _feed_forward(dim: int, mult: int, dropout: float) -> nn.Sequential:
    inner = mult * dim
    return nn.Sequential(
        GainNorm(dim),
        nn.Linear(dim, 2 * inner, bias=False),
        SwiGLU(),
        nn.Identity(),  # the official post-activation norm slot (off)
        nn.Dropout(dropout),
        nn.Linear(inner, dim, bias=False),
    )


class PriorTransformer(nn.Module):
    """Non-causal transformer of the official prior (``causal_transformer`` in its state)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        dim, heads = config.dim, config.heads
        dim_head = dim // heads
        self.rel_pos_bias = RelativePositionBias(heads)
        rotary = min(_ROTARY_DIM, dim_head)
        inv = 1.0 / 10000 ** (torch.arange(0, rotary, 2).float() / rotary)
        self.register_buffer("rotary_freqs", inv, persistent=False)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    MultiQueryAttention(dim, heads, dim_head, config.dropout),
                    _feed_forward(dim, config.ff_mult, config.dropout),
                ]
            )
            for _ in range(config.depth)
        )
        self.norm = GainNorm(dim, stable=True)
        self.project_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        bias = self.rel_pos_bias(n, x.device).to(x.dtype)
        pos = torch.arange(n, device=x.device, dtype=torch.float32)
        angles = (pos[:, None] * self.rotary_freqs.float()[None]).repeat_interleave(2, dim=-1)
        angles = angles.to(x.dtype)
        for attn, ff in self.layers:
            x = attn(x, bias, angles) + x
            x = ff(x) + x
        return self.project_out(self.norm(x))


class SinusoidalTime(nn.Module):
    """Timestep ``(B,) -> (B, dim)``: ``[sin, cos]`` of geometric frequencies."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        args = t.float()[:, None] * freqs[None]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class TimeMLP(nn.Module):
    """``dim -> 2 dim -> 2 dim -> dim`` with SiLU (its layers are ``net.0.0``, ``net.1.0``,
    ``net.2`` as in the official state)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = 2 * dim
        self.net = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.SiLU()),
            nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU()),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


class OfficialPriorNetwork(nn.Module):
    """``(x_t, t, cond, drop) -> x0`` over ``(B, T, D)`` tokens, the official design.

    The sequence is ``[cond, time, x_t + learned_query]``; the last ``T`` outputs are the
    prediction.  Where ``drop`` is True both the condition and the noisy tokens are replaced by
    their learned null embeddings, as the official unconditional branch does.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        if config.dim != config.token_dim:
            raise ConfigError(
                f"the official prior works at the token width: 'dim' must equal 'token_dim' "
                f"({config.token_dim}), got {config.dim}"
            )
        self.config = config
        t, d = config.n_tokens, config.dim
        self.to_time_embeds = nn.Sequential(nn.Sequential(SinusoidalTime(d), TimeMLP(d)))
        self.learned_query = nn.Parameter(torch.randn(t, d) * d**-0.5)
        self.causal_transformer = PriorTransformer(config)
        self.null_brain_embeds = nn.Parameter(torch.randn(t, d))
        self.null_image_embed = nn.Parameter(torch.randn(t, d))

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, drop: torch.Tensor | None
    ) -> torch.Tensor:
        """Predict the clean tokens; shapes as :meth:`mindeye_models.prior.PriorNetwork.forward`."""
        if drop is not None:
            mask = drop[:, None, None]
            cond = torch.where(mask, self.null_brain_embeds.to(cond.dtype), cond)
            x_t = torch.where(mask, self.null_image_embed.to(x_t.dtype), x_t)
        time = self.to_time_embeds(t).to(x_t.dtype)[:, None]
        tokens = torch.cat((cond, time, x_t + self.learned_query), dim=1)
        return self.causal_transformer(tokens)[:, -self.config.n_tokens :]


class OfficialDiffusionPrior(DiffusionPrior):
    """:class:`~mindeye_models.prior.DiffusionPrior` whose network is the official design.

    ``data_scale`` stays 1 (the official prior works on raw CLIP tokens).

    Examples
    --------
    Count the MindEye2 prior without allocating it::

        with torch.device("meta"):
            prior = OfficialDiffusionPrior(MINDEYE2_PRIOR)
    """

    def __init__(self, config: PriorConfig) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.net = OfficialPriorNetwork(config)
        self.register_buffer(
            "alphas_cumprod", cosine_alphas_cumprod(config.timesteps).float(), persistent=False
        )
        self.register_buffer("data_scale", torch.ones(()))


# MindEye1: 257 x 768 tokens (CLIP ViT-L/14), depth 6, 12 heads of 64, 100 timesteps.
MINDEYE1_PRIOR = PriorConfig(257, 768, dim=768, depth=6, heads=12, name="mindeye1-prior")
# MindEye2: 256 x 1664 tokens (OpenCLIP ViT-bigG/14), depth 6, 32 heads of 52, 100 timesteps.
MINDEYE2_PRIOR = PriorConfig(256, 1664, dim=1664, depth=6, heads=32, name="mindeye2-prior")
