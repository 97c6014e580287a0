"""unCLIP generator: tiny in-code pipeline, reconstruct (with and without init image), loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindeye_models.generator import reconstruct
from mindeye_models.unclip_pipeline import (
    _open_clip_tokenizer,
    build_tiny_unclip_pipeline,
    embed_dim,
    image_size,
    load_unclip_pipeline,
)
from rt_base.errors import ConfigError, WeightsError


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return build_tiny_unclip_pipeline(seed=0)


@pytest.fixture(scope="module")
def embeds():
    return torch.randn(2, 128, generator=torch.Generator().manual_seed(0))


def test_tokenizer_from_open_clip_vocab_matches_clip():
    tok = _open_clip_tokenizer()
    assert tok.model_max_length == 77 and len(tok) == 49408
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_tiny_pipeline_reconstructs_deterministically(pipe, embeds):
    assert embed_dim(pipe) == 128 and image_size(pipe) == 64
    a = reconstruct(pipe, embeds, steps=2, seed=1)
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, reconstruct(pipe, embeds, steps=2, seed=1))
    assert not np.array_equal(a, reconstruct(pipe, embeds, steps=2, seed=2))
    assert reconstruct(pipe, embeds[0], steps=1).shape == (1, 64, 64, 3)  # (E,) accepted
    # the embeddings steer the image
    assert not np.array_equal(a[:1], reconstruct(pipe, embeds[1:], steps=2, seed=1))


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_reconstruct_matches_the_diffusers_pipeline_call(pipe, embeds, guidance):
    ours = reconstruct(pipe, embeds[:1], steps=3, seed=5, guidance=guidance)
    ref = pipe(
        image_embeds=embeds[:1],
        prompt="",
        num_inference_steps=3,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).images
    assert np.abs(ours.astype(float) - np.round(ref * 255)).max() <= 1


def test_img2img_from_an_init_image(pipe, embeds):
    rng = np.random.default_rng(0)
    init = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)  # resized to 64
    plain = reconstruct(pipe, embeds, steps=4, seed=1)
    a = reconstruct(pipe, embeds, init, steps=4, strength=0.5, seed=1)
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, reconstruct(pipe, embeds, init, steps=4, strength=0.5, seed=1))
    assert not np.array_equal(a, plain)
    other = reconstruct(pipe, embeds, 255 - init, steps=4, strength=0.5, seed=1)
    assert not np.array_equal(a, other)  # the init image shapes the result
    assert not np.array_equal(a, reconstruct(pipe, embeds, init, steps=4, strength=1.0, seed=1))
    # one init image for the whole batch, and a tiny strength still runs one step
    assert reconstruct(pipe, embeds, init[0], steps=4, strength=0.01).shape == (2, 64, 64, 3)


def test_bad_arguments_raise_config_error(pipe, embeds):
    with pytest.raises(ConfigError, match="'image_embeds'"):
        reconstruct(pipe, torch.zeros(1, 64))
    with pytest.raises(ConfigError, match="'strength'"):
        reconstruct(pipe, embeds, np.zeros((64, 64, 3), np.uint8), strength=0)
    with pytest.raises(ConfigError, match="'init_image'"):
        reconstruct(pipe, embeds, np.zeros((3, 64, 64, 3), np.uint8))
    with pytest.raises(ConfigError, match="'scheduler'"):
        load_unclip_pipeline("anywhere", scheduler="plms")


def test_missing_or_incomplete_directory_raises_weights_error(tmp_path):
    missing = tmp_path / "no-unclip"
    with pytest.raises(WeightsError) as info:
        load_unclip_pipeline(missing)
    assert str(missing) in str(info.value) and "model_index.json" in str(info.value)
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "model_index.json").write_text("{}")
    with pytest.raises(WeightsError, match="lacks unet/config.json, vae/config.json"):
        load_unclip_pipeline(partial)


def test_saved_pipeline_loads_back_and_rejects_mismatched_parts(pipe, embeds, tmp_path):
    pipe.save_pretrained(tmp_path / "unclip", safe_serialization=True)
    loaded = load_unclip_pipeline(tmp_path / "unclip", scheduler="dpm")
    assert loaded.image_encoder is None
    assert np.array_equal(
        reconstruct(loaded, embeds, steps=2, seed=3), reconstruct(pipe, embeds, steps=2, seed=3)
    )
    assert reconstruct(
        load_unclip_pipeline(tmp_path / "unclip", scheduler="ddim"), embeds, steps=1
    ).shape == (2, 64, 64, 3)
    cfg_path = tmp_path / "unclip" / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["class_embed_type"] = None
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="unclip"):
        load_unclip_pipeline(tmp_path / "unclip")
