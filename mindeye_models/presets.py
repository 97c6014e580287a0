"""MindEye network sizes: the papers' subject-1 models and small ones that train on a laptop.

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


@dataclass(frozen=True)
class MindEye2Config:
    """Sizes of a MindEye2 network (Scotti et al. 2024, arXiv 2403.11207).

    A linear "ridge" per subject maps that subject's voxels into one shared ``hidden``-wide
    space; a residual MLP-mixer backbone then predicts ``n_tokens x clip_dim`` CLIP tokens
    (OpenCLIP ViT-bigG/14 patch tokens, 256 x 1664, in the paper), a per-token projector gives
    the retrieval space, and an optional "blurry" head predicts 4 x 28 x 28 autoencoder latents.

    Parameters
    ----------
    n_voxels : voxels of each subject, in ridge order (one entry per subject).
    hidden : width of the shared space and of the backbone (paper: 4096; 1024 for the
        lighter released model).
    n_blocks : residual mixer blocks.
    seq_len : length of the shared-space sequence (1 in the paper).
    n_tokens, clip_dim : token shape of ``embedder``.
    dropout : dropout inside the mixer blocks.
    blurry : build the low-level ("blurry") head.
    embedder : name of the image embedder whose tokens are the targets.
    name : preset name.
    """

    n_voxels: tuple[int, ...]
    hidden: int = 4096
    n_blocks: int = 4
    seq_len: int = 1
    n_tokens: int = 256
    clip_dim: int = 1664
    dropout: float = 0.15
    blurry: bool = True
    embedder: str = "ViT-bigG-14"
    name: str = "custom"

    def __post_init__(self) -> None:
        voxels = self.n_voxels
        if isinstance(voxels, int) or not voxels:
            raise ConfigError(
                f"'n_voxels' must be a non-empty sequence of voxel counts, one per subject, got "
                f"{voxels!r}: pass e.g. (15724,) for one subject"
            )
        object.__setattr__(
            self,
            "n_voxels",
            tuple(check_number(v, "n_voxels", minimum=1, integer=True) for v in voxels),
        )
        for key in ("hidden", "n_blocks", "seq_len", "n_tokens", "clip_dim"):
            check_number(getattr(self, key), key, minimum=1, integer=True)
        value = check_number(self.dropout, "dropout", minimum=0, maximum=0.99)
        object.__setattr__(self, "dropout", float(value))
        check_choice(self.embedder, "embedder", sorted(EMBEDDERS))
        expected = EMBEDDERS[self.embedder].token_shape
        if (self.n_tokens, self.clip_dim) != expected:
            raise ConfigError(
                f"'n_tokens' x 'clip_dim' must match the token shape of embedder "
                f"{self.embedder!r} ({expected[0]} x {expected[1]}), got "
                f"{self.n_tokens} x {self.clip_dim}"
            )

    @property
    def token_shape(self) -> tuple[int, int]:
        """``(n_tokens, clip_dim)``."""
        return (self.n_tokens, self.clip_dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        data = asdict(self)
        data["n_voxels"] = list(self.n_voxels)
        return data


MINDEYE2_PRESETS: dict[str, MindEye2Config] = {
    # The paper's subject-1 model after fine-tuning (final_subj01_pretrained_40sess_24bs):
    # one ridge (subject 1), hidden 4096, 4 blocks, ViT-bigG/14 tokens, blurry head.
    "mindeye2-subj01": MindEye2Config(n_voxels=(NSD_SUBJ01_VOXELS,), name="mindeye2-subj01"),
    # The lighter released variant (multisubject_subj01_1024hid_nolow_300ep): hidden 1024, no
    # blurry head; its ridges are those of NSD subjects 2-8 (pass n_voxels from the data).
    "mindeye2-1024-nolow": MindEye2Config(
        n_voxels=(NSD_SUBJ01_VOXELS,), hidden=1024, blurry=False, name="mindeye2-1024-nolow"
    ),
    # For unit tests: "tiny-random" tokens, two subjects.
    "mindeye2-tiny": MindEye2Config(
        n_voxels=(40, 30),
        hidden=32,
        n_blocks=2,
        n_tokens=17,
        clip_dim=128,
        embedder="tiny-random",
        name="mindeye2-tiny",
    ),
}


def get_mindeye2_preset(name: str, n_voxels: tuple[int, ...] | None = None) -> MindEye2Config:
    """The MindEye2 preset ``name`` (see :data:`MINDEYE2_PRESETS`), with ``n_voxels`` (one
    count per subject) replaced when given."""
    check_choice(name, "preset", list(MINDEYE2_PRESETS))
    config = MINDEYE2_PRESETS[name]
    return config if n_voxels is None else replace(config, n_voxels=tuple(n_voxels))


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
