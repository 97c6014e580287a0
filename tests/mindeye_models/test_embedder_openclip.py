"""OpenCLIP ViT-bigG/14 and ViT-L/14 towers from local weights files (random weights here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.embedder import EMBEDDERS, EmbedderConfig, ImageEmbedder
from rt_base.errors import ConfigError, WeightsError

SMALL_PATCHES = EmbedderConfig(
    "small-patches", 56, 14, 64, 2, 4, 32, mlp_ratio=8192 / 1664, tokens="patches"
)


def _visual(config: EmbedderConfig):
    from open_clip.transformer import VisionTransformer

    return VisionTransformer(
        image_size=config.image_size,
        patch_size=config.patch_size,
        width=config.width,
        layers=config.layers,
        heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        output_dim=config.output_dim,
    )


def test_bigg_geometry_is_open_clips_and_gives_256_by_1664_tokens():
    import open_clip

    config = EMBEDDERS["ViT-bigG-14"]
    assert config.token_shape == (256, 1664)
    with torch.device("meta"):
        ours = _visual(config)
        reference = open_clip.create_model("ViT-bigG-14", pretrained=None, device="meta").visual
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert own == ref
    assert own["transformer.resblocks.0.mlp.c_fc.weight"] == (8192, 1664)
    assert EMBEDDERS["ViT-L-14"].token_shape == (257, 768)


def test_patch_tokens_from_a_local_file_match_the_tower(tmp_path):
    torch.manual_seed(1)
    visual = _visual(SMALL_PATCHES).eval()
    torch.save({f"visual.{k}": v for k, v in visual.state_dict().items()}, tmp_path / "clip.bin")
    embedder = ImageEmbedder(SMALL_PATCHES, weights=tmp_path / "clip.bin")
    images = np.random.default_rng(0).integers(0, 255, (2, 56, 56, 3), dtype=np.uint8)
    tokens = embedder.embed(images)
    assert tokens.shape == (2, 16, 64)
    visual.output_tokens = True
    with torch.no_grad():
        _, ref = visual(embedder.preprocess(images))
    np.testing.assert_allclose(tokens, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_wrong_clip_file_names_what_does_not_fit(tmp_path):
    visual = _visual(SMALL_PATCHES)
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    del state["visual.ln_post.bias"]
    state["visual.proj"] = torch.zeros(64, 16)
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(WeightsError, match=r"ln_post.bias.*proj: file \(64, 16\)"):
        ImageEmbedder(SMALL_PATCHES, weights=tmp_path / "bad.bin")
    with pytest.raises(WeightsError, match="needs its weights"):
        ImageEmbedder(EMBEDDERS["ViT-bigG-14"], device="meta")
    with pytest.raises(ConfigError, match="'tokens'"):
        EmbedderConfig("x", 56, 14, 64, 2, 4, 32, tokens="cls")
