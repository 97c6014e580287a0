"""The MindEye diffusion prior: a transformer that denoises CLIP image tokens given brain tokens.

MindEye (Scotti et al. 2023, arXiv 2305.18274) refines the backbone's token prediction with a
DALL-E-2-style diffusion prior: a non-causal transformer that sees the backbone's tokens (the
condition), a timestep token and the noisy CLIP image tokens (with learned position embeddings,
the "pos_emb" query mode), and predicts the clean tokens ``x0`` from the last ``T`` outputs.
It is trained with 100 diffusion timesteps on a cosine schedule, dropping the condition 20 % of
the time so that classifier-free guidance can be used when sampling.

This is an independent implementation with the same sizes: the ``paper`` preset is the 257 x 768
prior (6 layers, 12 heads of 64, width 768).  Sampling uses a strided ancestral (DDIM, eta = 1
by default) sampler on a subset of the training timesteps, so a few steps are enough for a
real-time preview.

One addition: a ``data_scale`` buffer (1 until :meth:`DiffusionPrior.fit_scale` sets it from
training targets) brings the tokens to unit variance before noise is added, so the schedule's
signal-to-noise ratios mean the same for any embedder.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of a diffusion prior.

    Parameters
    ----------
    n_tokens, token_dim : shape ``(T, D)`` of the CLIP image tokens that are denoised; the
        condition (the backbone's output) has the same shape.
    dim : width of the transformer (tokens are projected ``D -> dim`` and back).
    depth : number of transformer layers.
    heads : attention heads; ``dim`` must be a multiple of ``heads``.
    ff_mult : feed-forward width as a multiple of ``dim``.
    timesteps : number of training diffusion timesteps (MindEye: 100).
    cond_drop_prob : probability of replacing the condition by the learned null condition in
        training (for classifier-free guidance; MindEye: 0.2).
    dropout : dropout inside the transformer layers.
    name : preset name.
    """

    n_tokens: int = 257
    token_dim: int = 768
    dim: int = 768
    depth: int = 6
    heads: int = 12
    ff_mult: int = 4
    timesteps: int = 100
    cond_drop_prob: float = 0.2
    dropout: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        for key in ("n_tokens", "token_dim", "dim", "depth", "heads", "ff_mult", "timesteps"):
            check_number(getattr(self, key), key, minimum=1, integer=True)
        for key in ("cond_drop_prob", "dropout"):
            value = check_number(getattr(self, key), key, minimum=0, maximum=0.99)
            object.__setattr__(self, key, float(value))
        if self.dim % self.heads:
            raise ConfigError(
                f"'dim' must be a multiple of 'heads', got dim={self.dim}, heads={self.heads}: "
                "pick heads that divide the width (e.g. dim = 64 * heads)"
            )

    @property
    def token_shape(self) -> tuple[int, int]:
        """``(n_tokens, token_dim)``."""
        return (self.n_tokens, self.token_dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for checkpoint sidecars)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"prior config has unknown keys {unknown}; allowed keys are {sorted(names)}"
            )
        return cls(**data)


PRIOR_PRESETS: dict[str, PriorConfig] = {
    # MindEye's 257 x 768 prior: 6 layers, 12 heads of 64, width 768, 100 cosine timesteps.
    "paper": PriorConfig(257, 768, dim=768, depth=6, heads=12, name="paper"),
    # For the "tiny-random" embedder's 17 x 128 tokens: trains in minutes on 2 cores.
    "small": PriorConfig(17, 128, dim=128, depth=4, heads=4, name="small"),
    # For unit tests.
    "tiny": PriorConfig(17, 128, dim=32, depth=1, heads=2, ff_mult=2, name="tiny"),
}


def get_prior_preset(name: str, **overrides: Any) -> PriorConfig:
    """The prior preset ``name`` (``"paper"``, ``"small"``, ``"tiny"``) with ``overrides``.

    Raises
    ------
    ConfigError
        For an unknown name or a bad override.
    """
    check_choice(name, "prior preset", list(PRIOR_PRESETS))
    config = PRIOR_PRESETS[name]
    names = {f.name for f in fields(PriorConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown prior options {unknown}; allowed are {sorted(names)}")
    return replace(config, **overrides) if overrides else config


def prior_preset_for(token_shape: tuple[int, int]) -> str:
    """The prior preset (``paper`` or ``small``) whose token shape is ``token_shape``.

    Raises
    ------
    ConfigError
        When no preset has that shape.
    """
    for name in ("paper", "small"):
        if PRIOR_PRESETS[name].token_shape == tuple(token_shape):
            return name
    raise ConfigError(
        f"no prior preset for {token_shape[0]} x {token_shape[1]} tokens: pass prior_preset "
        "with a PriorConfig of that shape"
    )


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Cumulative signal fractions of the cosine schedule (Nichol & Dhariwal 2021).

    Returns
    -------
    (timesteps,) float64 tensor ``alpha_bar[t]`` for t = 0 .. timesteps - 1, from the
    betas clipped at 0.999 as usual.
    """
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    f = torch.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(0, 0.999)
    return torch.cumprod(1 - betas, 0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(B,) -> (B, dim)`` of (integer or float) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _randn(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal draws made on the generator's device (a CPU generator works for CUDA)."""
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def _randint(high: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gdev).to(device)


class PriorNetwork(nn.Module):
    """Non-causal transformer ``(x_t, t, cond) -> x0``, all tokens ``(B, T, D)``.

    The sequence is ``[cond + pos_c, time, x_t + pos_x]`` (``2 T + 1`` tokens); the last ``T``
    outputs are projected back to ``D``.  ``null_cond`` replaces the condition when it is
    dropped.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        t, d, w = config.n_tokens, config.token_dim, config.dim
        self.cond_in = nn.Linear(d, w)
        self.x_in = nn.Linear(d, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.pos_cond = nn.Parameter(torch.randn(t, w) * 0.02)
        self.pos_x = nn.Parameter(torch.randn(t, w) * 0.02)  # the learned positional queries
        self.null_cond = nn.Parameter(torch.randn(t, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            w,
            config.heads,
            dim_feedforward=config.ff_mult * w,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(w)
        self.out = nn.Linear(w, d)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, drop: torch.Tensor | None
    ) -> torch.Tensor:
        """Predict ``x0``.

        Parameters
        ----------
        x_t : (B, T, D) noisy tokens.
        t : (B,) integer timesteps.
        cond : (B, T, D) condition tokens.
        drop : (B,) bool, True where the condition is replaced by the null condition; None
            keeps all.

        Returns
        -------
        (B, T, D) predicted clean tokens.
        """
        if drop is not None:
            cond = torch.where(drop[:, None, None], self.null_cond.to(cond.dtype), cond)
        c = self.cond_in(cond) + self.pos_cond
        x = self.x_in(x_t) + self.pos_x
        time = self.time_mlp(timestep_embedding(t, self.config.dim))[:, None]
        h = self.transformer(torch.cat([c, time, x], dim=1))
        return self.out(self.norm_out(h[:, -self.config.n_tokens :]))


class DiffusionPrior(nn.Module):
    """Diffusion prior over CLIP image tokens, conditioned on a backbone's tokens.

    Parameters
    ----------
    config : PriorConfig

    Examples
    --------
    >>> prior = DiffusionPrior(get_prior_preset("tiny"))
    >>> cond = torch.randn(2, 17, 128)
    >>> prior.loss(cond, torch.randn(2, 17, 128)).shape
    torch.Size([])
    >>> prior.sample(cond, steps=4).shape
    torch.Size([2, 17, 128])
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        self.net = PriorNetwork(config)
        self.register_buffer(
            "alphas_cumprod", cosine_alphas_cumprod(config.timesteps).float(), persistent=False
        )
        self.register_buffer("data_scale", torch.ones(()))

    def _check(self, tokens: torch.Tensor, name: str) -> None:
        shape = (self.config.n_tokens, self.config.token_dim)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != shape:
            raise ConfigError(
                f"'{name}' must be a (batch, {shape[0]}, {shape[1]}) tensor for prior "
                f"{self.config.name!r}, got shape {tuple(tokens.shape)}: use the prior preset "
                "that matches the embedder's token shape"
            )

    @torch.no_grad()
    def fit_scale(self, target_tokens: torch.Tensor) -> float:
        """Set ``data_scale`` so that ``target_tokens * data_scale`` has unit std.

        Parameters
        ----------
        target_tokens : (N, T, D) training targets.

        Returns
        -------
        The scale.
        """
        self._check(target_tokens, "target_tokens")
        std = float(target_tokens.float().std())
        scale = 1.0 / std if std > 1e-8 else 1.0
        self.data_scale.fill_(scale)
        return scale

    def loss(
        self,
        cond_tokens: torch.Tensor,
        target_tokens: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Denoising loss: MSE between predicted and true clean tokens (x0 prediction).

        Timesteps are drawn uniformly from ``0 .. timesteps - 1``; the condition is dropped
        with probability ``cond_drop_prob`` when the module is in training mode.

        Parameters
        ----------
        cond_tokens : (B, T, D) the backbone's tokens.
        target_tokens : (B, T, D) CLIP image tokens of the seen images.
        generator : optional torch.Generator for the noise, timesteps and dropout.

        Returns
        -------
        Scalar loss (in units of the scaled tokens).
        """
        self._check(cond_tokens, "cond_tokens")
        self._check(target_tokens, "target_tokens")
        b, dev = len(target_tokens), target_tokens.device
        x0 = target_tokens * self.data_scale
        t = _randint(self.config.timesteps, b, generator, dev)
        noise = _randn(x0.shape, generator, dev).to(x0.dtype)
        a = self.alphas_cumprod[t].view(b, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        drop = None
        if self.training and self.config.cond_drop_prob > 0:
            gdev = generator.device if generator is not None else dev
            u = torch.rand(b, device=gdev, generator=generator).to(dev)
            drop = u < self.config.cond_drop_prob
        pred = self.net(x_t, t, cond_tokens, drop)
        return F.mse_loss(pred, x0)

    def _predict_x0(self, x_t, t, cond, guidance: float) -> torch.Tensor:
        b = len(x_t)
        tt = torch.full((b,), t, device=x_t.device, dtype=torch.long)
        if guidance == 1.0:
            return self.net(x_t, tt, cond, None)
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
        both = self.net(
            torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([cond, cond]), drop.to(x_t.device)
        )
        cond_pred, null_pred = both[:b], both[b:]
        return null_pred + guidance * (cond_pred - null_pred)

    @torch.no_grad()
    def sample(
        self,
        cond_tokens: torch.Tensor,
        steps: int = 20,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        eta: float = 1.0,
    ) -> torch.Tensor:
        """Draw CLIP image tokens given the backbone's tokens.

        Parameters
        ----------
        cond_tokens : (B, T, D) the backbone's tokens.
        steps : number of denoising steps, 1 .. ``timesteps`` (evenly strided through the
            training timesteps; MindEye samples all 100).
        guidance : classifier-free guidance scale; 1 uses the conditional prediction only
            (one network pass per step), larger values push away from the unconditional one.
        generator : torch.Generator for the initial noise and the ancestral noise.
        eta : 1 for ancestral (DDPM-like) steps, 0 for deterministic DDIM steps.

        Returns
        -------
        (B, T, D) tokens, in the units of the training targets.
        """
        self._check(cond_tokens, "cond_tokens")
        n = self.config.timesteps
        steps = check_number(steps, "steps", minimum=1, maximum=n, integer=True)
        guidance = float(check_number(guidance, "guidance", minimum=0))
        eta = float(check_number(eta, "eta", minimum=0, maximum=1))
        dev = cond_tokens.device
        ts = torch.linspace(n - 1, 0, steps).round().long().tolist()
        x = _randn(cond_tokens.shape, generator, dev)
        ac = self.alphas_cumprod
        for i, t in enumerate(ts):
            x0 = self._predict_x0(x, t, cond_tokens, guidance)
            if i == len(ts) - 1:
                x = x0
                break
            a_t, a_prev = ac[t], ac[ts[i + 1]]
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
            mean = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
            noise = _randn(x.shape, generator, dev)
            x = mean + sigma * noise
        return x / self.data_scale


def prior_parameter_count(preset: str | PriorConfig = "paper") -> int:
    """Number of parameters of a prior, counted on the meta device (nothing is allocated).

    Parameters
    ----------
    preset : a preset name or a :class:`PriorConfig`.
    """
    config = get_prior_preset(preset) if isinstance(preset, str) else preset
    with torch.device("meta"):
        prior = DiffusionPrior(config)
    return sum(p.numel() for p in prior.parameters())
