"""What the reconstruct stage does per trial, and the rules on those options (no torch at import).

The one home of: the reconstruction modes, the dtypes reconstruction runs in, the rule that
``full`` mode needs a generator, which mode ``auto`` means, and :class:`ReconOptions`.
:class:`realtime.config.StreamConfig` checks its ``--recon-*`` options here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from rt_base.checks import check_choice, check_number, check_torch_device
from rt_base.errors import ConfigError

#: ``none``: no reconstruct stage; ``lowlevel``: the blurry image from the low-level head;
#: ``full``: diffusion prior + generator, img2img from the blurry image
RECON_MODES = ("none", "lowlevel", "full")
#: what ``--recon`` accepts: a mode, or ``auto`` (see :func:`resolve_mode`)
RECON_CHOICES = ("auto", *RECON_MODES)
RECON_DTYPE_NAMES = ("float32", "float16", "bfloat16")
#: the generator name that builds a tiny random-weight unCLIP pipeline (no content, no download)
TINY_RANDOM_GENERATOR = "tiny-random"


def resolve_mode(recon: str, generator: str | None) -> str:
    """The mode a session runs: ``auto`` is ``full`` with a generator, else ``lowlevel``.

    Raises
    ------
    ConfigError
        For an unknown choice, or ``full`` without a generator.
    """
    check_choice(recon, "recon", RECON_CHOICES)
    if recon == "auto":
        return "full" if generator else "lowlevel"
    if recon == "full" and not generator:
        raise ConfigError(
            "'recon' full needs a generator: --generator DIR (a local Stable unCLIP snapshot, "
            f"e.g. stable-diffusion-2-1-unclip-small) or --generator {TINY_RANDOM_GENERATOR} "
            "(random weights: exercises the path, the images carry no content)"
        )
    return recon


def check_recon_options(
    *, steps: Any, strength: Any, prior_steps: Any, seed: Any, dtype: Any, device: str
) -> dict[str, Any]:
    """Check the per-trial options; returns them normalized (ints as ints).

    Raises
    ------
    ConfigError
        Naming the ``mindeye-rt stream`` option, e.g. ``'recon_steps'``.
    """
    out = {
        "steps": check_number(steps, "recon_steps", minimum=1, maximum=1000, integer=True),
        "strength": check_number(
            strength, "recon_strength", minimum=0.0, maximum=1.0, strict_min=True
        ),
        "prior_steps": check_number(
            prior_steps, "prior_steps", minimum=1, maximum=100, integer=True
        ),
        "seed": check_number(seed, "recon_seed", minimum=0, integer=True),
        "dtype": check_choice(dtype, "recon_dtype", RECON_DTYPE_NAMES),
    }
    if dtype != "float32" and not str(device).startswith("cuda"):
        raise ConfigError(
            f"'recon_dtype' {dtype!r} needs a CUDA device, reconstruction runs on {device!r}: "
            "use float32 there, or --recon-device cuda"
        )
    return out


@dataclass(frozen=True)
class ReconOptions:
    """What the reconstruct stage does per trial (each is a ``mindeye-rt stream`` option).

    Parameters
    ----------
    mode : ``lowlevel`` or ``full``.
    steps : generator sampler steps of the full schedule (``full``).
    strength : img2img strength from the blurry image, in (0, 1] (MindEye: 0.85).
    prior_steps : diffusion prior sampling steps (MindEye samples 100).
    prior_guidance : classifier-free guidance of the prior (1: conditional only).
    seed : base seed; trial ``n`` uses ``seed + n``, so a replay reproduces its images.
    device : torch device.
    dtype : ``float32``, or ``float16``/``bfloat16`` on a GPU.
    """

    mode: str = "lowlevel"
    steps: int = 4
    strength: float = 0.85
    prior_steps: int = 10
    prior_guidance: float = 1.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_choice(self.mode, "recon", RECON_MODES[1:])
        check_number(self.prior_guidance, "prior_guidance", minimum=0)
        check_torch_device(self.device, "recon_device")
        checked = check_recon_options(
            steps=self.steps,
            strength=self.strength,
            prior_steps=self.prior_steps,
            seed=self.seed,
            dtype=self.dtype,
            device=self.device,
        )
        for key in ("steps", "strength", "prior_steps", "seed"):
            object.__setattr__(self, key, checked[key])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
