"""MindEye network sizes: the paper's subject-1 model and small ones that train on a laptop.

The MindEye1 voxel-to-CLIP network (Scotti et al. 2023, arXiv 2305.18274) is a residual MLP
"backbone" (voxels -> ``hidden`` -> ``n_blocks`` residual blocks -> ``n_tokens * clip_dim``)
followed by a per-token MLP "projector" used for the contrastive (retrieval) objective.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mindeye_models.embedder import EMBEDDERS
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

NSD_SUBJ01_VOXELS = 15724  # voxels in subject 1's "nsdgeneral" ROI


@dataclass(frozen=True)
class MindEyeConfig:
    """Sizes of a MindEye voxel-to-CLIP network.

    Parameters
    ----------
    n_voxels : number of input voxels (the ROI size of the subject).
    hidden : width of the residual MLP.
    n_blocks : number of residual blocks (Linear, LayerNorm, GELU, Dropout).
    n_tokens, clip_dim : shape ``(T, D)`` of the CLIP image tokens the network predicts; must
        equal the token shape of ``embedder``.
    proj_hidden : width of the projector's two hidden layers.
    dropout_in : dropout after the input layer.
    dropout_block : dropout inside each residual block.
    embedder : name of the image embedder (see :data:`mindeye_models.embedder.EMBEDDERS`)
        whose tokens are the regression targets.
    name : preset name, recorded in checkpoints.
    """

    n_voxels: int
    hidden: int = 4096
    n_blocks: int = 4
    n_tokens: int = 257
    clip_dim: int = 768
    proj_hidden: int = 2048
    dropout_in: float = 0.5
    dropout_block: float = 0.15
    embedder: str = "ViT-L-14"
    name: str = "custom"

    def __post_init__(self) -> None:
        for key in ("n_voxels", "hidden", "n_tokens", "clip_dim", "proj_hidden"):
            check_number(getattr(self, key), key, minimum=1, integer=True)
        check_number(self.n_blocks, "n_blocks", minimum=0, integer=True)
        for key in ("dropout_in", "dropout_block"):
            value = check_number(getattr(self, key), key, minimum=0, maximum=0.99)
            object.__setattr__(self, key, float(value))
        check_choice(self.embedder, "embedder", sorted(EMBEDDERS))
        expected = EMBEDDERS[self.embedder].token_shape
        if (self.n_tokens, self.clip_dim) != expected:
            raise ConfigError(
                f"'n_tokens' x 'clip_dim' must match the token shape of embedder "
                f"{self.embedder!r} ({expected[0]} x {expected[1]}), got "
                f"{self.n_tokens} x {self.clip_dim}: change the sizes or pick the embedder "
                "that produces these tokens"
            )

    @property
    def token_shape(self) -> tuple[int, int]:
        """``(n_tokens, clip_dim)``."""
        return (self.n_tokens, self.clip_dim)

    @property
    def out_dim(self) -> int:
        """Width of the backbone output, ``n_tokens * clip_dim``."""
        return self.n_tokens * self.clip_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for checkpoint sidecars)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MindEyeConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"MindEye config has unknown keys {unknown}; allowed keys are {sorted(names)}"
            )
        if "n_voxels" not in data:
            raise ConfigError("MindEye config is missing the required key 'n_voxels'")
        return cls(**data)


PRESETS: dict[str, MindEyeConfig] = {
    # The paper's subject-1 network (Table/Appendix of arXiv 2305.18274): ~940 M backbone.
    "mindeye1-subj01": MindEyeConfig(
        n_voxels=NSD_SUBJ01_VOXELS,
        hidden=4096,
        n_blocks=4,
        n_tokens=257,
        clip_dim=768,
        proj_hidden=2048,
        dropout_in=0.5,
        dropout_block=0.15,
        embedder="ViT-L-14",
        name="mindeye1-subj01",
    ),
    # Trains in a few minutes on 2 CPU cores from ~3000 trials against "tiny-random" tokens.
    "demo": MindEyeConfig(
        n_voxels=NSD_SUBJ01_VOXELS,
        hidden=1024,
        n_blocks=2,
        n_tokens=17,
        clip_dim=128,
        proj_hidden=256,
        dropout_in=0.5,
        dropout_block=0.15,
        embedder="tiny-random",
        name="demo",
    ),
    # For unit tests: pass n_voxels from the data.
    "tiny": MindEyeConfig(
        n_voxels=NSD_SUBJ01_VOXELS,
        hidden=64,
        n_blocks=1,
        n_tokens=17,
        clip_dim=128,
        proj_hidden=64,
        dropout_in=0.1,
        dropout_block=0.1,
        embedder="tiny-random",
        name="tiny",
    ),
}


def get_preset(name: str, n_voxels: int | None = None) -> MindEyeConfig:
    """The preset ``name``, with ``n_voxels`` replaced when given.

    Parameters
    ----------
    name : one of :data:`PRESETS` (``"mindeye1-subj01"``, ``"demo"``, ``"tiny"``).
    n_voxels : number of voxels of the data the model will see; None keeps the preset's
        (15,724, NSD subject 1).

    Raises
    ------
    ConfigError
        For an unknown name or a bad ``n_voxels``.
    """
    check_choice(name, "preset", list(PRESETS))
    config = PRESETS[name]
    if n_voxels is not None:
        n_voxels = check_number(n_voxels, "n_voxels", minimum=1, integer=True)
        config = replace(config, n_voxels=n_voxels)
    return config
