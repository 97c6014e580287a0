"""Official MindEye1 / MindEye2 state dicts load into our modules, run, and fail by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mindeye_models.info import param_counts
from mindeye_models.mindeye2 import MindEye2
from mindeye_models.official_keys import MINDEYE2, rename
from mindeye_models.official_mindeye1 import (
    load_official_mindeye1,
    load_official_mindeye1_lowlevel,
    load_official_mindeye1_prior,
)
from mindeye_models.official_mindeye2 import load_official_mindeye2, mindeye2_config_from_state
from mindeye_models.official_prior import MINDEYE1_PRIOR, MINDEYE2_PRIOR, OfficialDiffusionPrior
from mindeye_models.presets import get_mindeye2_preset
from mindeye_models.state_dicts import diff_state
from rt_base.errors import WeightsError
from tests.mindeye_models.fake_deepspeed import FakeDeepSpeed
from tests.mindeye_models.official_layouts import (
    materialize,
    mindeye1_lowlevel_shapes,
    mindeye1_voxel2clip_shapes,
    mindeye2_shapes,
    prior_shapes,
)

TINY_PRIOR = {"heads": 2, "depth": 2}


@pytest.fixture
def fake_deepspeed():
    return FakeDeepSpeed()


VOX = (40, 30)


def tiny_mindeye2(blurry=True, prior=True):
    shapes = mindeye2_shapes(
        VOX, 32, 2, 17, 128, blurry=blurry, prior=TINY_PRIOR if prior else None
    )
    return materialize(shapes)


def reference_tokens(sd, x, subject, blocks=2, tokens=17, clip=128):
    """MindEye2's ridge + mixer backbone + clip_proj written out with functional ops."""

    def lin(p, y):
        return F.linear(y, sd[f"{p}.weight"], sd[f"{p}.bias"])

    def ln(p, y):
        return F.layer_norm(y, y.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])

    def mlp(p, y):
        return lin(f"{p}.3", F.gelu(lin(f"{p}.0", y)))

    h = lin(f"ridge.linears.{subject}", x)[:, None]  # (B, 1, H)
    r1, r2 = h, h.transpose(1, 2)
    for i in range(blocks):
        h = r1 = mlp(f"backbone.mixer_blocks1.{i}.1", ln(f"backbone.mixer_blocks1.{i}.0", h)) + r1
        t = h.transpose(1, 2)
        r2 = mlp(f"backbone.mixer_blocks2.{i}.1", ln(f"backbone.mixer_blocks2.{i}.0", t)) + r2
        h = r2.transpose(1, 2)
    tok = lin("backbone.backbone_linear", h.flatten(1)).view(len(x), tokens, clip)
    p = tok
    for a, b in ((0, 2), (3, 5), (6, 8)):
        p = lin(f"backbone.clip_proj.{b}", F.gelu(ln(f"backbone.clip_proj.{a}", p)))
    return tok, p


def test_mindeye2_official_state_loads_and_matches_the_reference(tmp_path):
    sd = tiny_mindeye2()
    torch.save({"epoch": 1, "model_state_dict": sd}, tmp_path / "last.pth")
    loaded = load_official_mindeye2(tmp_path / "last.pth")
    cfg = loaded.model.config
    assert (cfg.n_voxels, cfg.hidden, cfg.n_blocks, cfg.blurry) == (VOX, 32, 2, True)
    assert cfg.embedder == "tiny-random"
    x = torch.randn(3, 30)
    with torch.no_grad():
        out = loaded.model(x, subject=1)
        tok, clip = reference_tokens(sd, x, 1)
    torch.testing.assert_close(out.tokens, tok, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.clip, clip, rtol=1e-5, atol=1e-5)
    assert out.blurry_latents.shape == (3, 4, 28, 28) and out.blurry_maps.shape == (3, 49, 512)
    assert torch.isfinite(out.blurry_latents).all()
    prior = loaded.prior
    assert prior.config.token_shape == (17, 128) and prior.config.heads == 2
    torch.testing.assert_close(prior.net.learned_query, sd["diffusion_prior.net.learned_query"])
    sample = prior.sample(out.tokens, steps=3, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (3, 17, 128) and torch.isfinite(sample).all()


def test_mindeye2_blurry_head_matches_the_official_composition():
    from diffusers.models.autoencoders.vae import Decoder

    sd = tiny_mindeye2(prior=False)
    model = load_official_mindeye2(sd).model
    dec = Decoder(
        in_channels=64,
        out_channels=4,
        up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[32, 64, 128],
        layers_per_block=1,
    )
    dec.load_state_dict(
        {k[len("backbone.bupsampler.") :]: v for k, v in sd.items() if "bupsampler" in k}
    )
    dec.eval()
    x = torch.randn(2, 40)
    with torch.no_grad():
        feats = model.backbone.features(model.ridge(x, 0))
        b = F.linear(feats, sd["backbone.blin1.weight"], sd["backbone.blin1.bias"]).view(
            2, 64, 7, 7
        )
        b = F.group_norm(b, 1, sd["backbone.bnorm.weight"], sd["backbone.bnorm.bias"])
        torch.testing.assert_close(model(x).blurry_latents, dec(b), rtol=1e-4, atol=1e-5)


def test_full_size_mindeye2_layout_matches_on_meta_and_counts_match_the_release():
    shapes = mindeye2_shapes((15724,), 4096, 4, 256, 1664, prior={"heads": 32, "depth": 6})
    official = materialize(shapes, device="meta")
    config = mindeye2_config_from_state(official)
    assert config == get_mindeye2_preset("mindeye2-subj01").__class__(
        **{**get_mindeye2_preset("mindeye2-subj01").__dict__, "name": "mindeye2-official"}
    )
    with torch.device("meta"):
        model = MindEye2(config)
        prior = OfficialDiffusionPrior(MINDEYE2_PRIOR)
    network = {k: v for k, v in official.items() if not k.startswith("diffusion_prior.")}
    renamed, unmatched = rename(network, MINDEYE2)
    assert unmatched == [] and not diff_state(model.state_dict(), renamed)
    prior_part = {k[len("diffusion_prior.") :]: v for k, v in official.items() if "prior." in k}
    renamed, unmatched = rename(prior_part, [(r"^net\.", "net.")])
    assert unmatched == []
    assert not diff_state(
        {k: v for k, v in prior.state_dict().items() if k != "data_scale"}, renamed
    )
    # The official notebooks print these counts (MindEyeV2 src/recon_inference.ipynb, Train.ipynb).
    counts = param_counts("mindeye2-subj01")
    assert counts["ridge"] == 64_409_600
    assert counts["network"] == 1_967_429_628
    assert counts["backbone"] + counts["clip_proj"] + counts["blurry"] == 1_903_020_028
    assert counts["prior"] == 259_865_200  # + 16 frozen rotary frequencies = 259,865,216
    light = param_counts("mindeye2-1024-nolow")
    assert (light["ridge"], light["network"]) == (16_102_400, 469_462_680)
    assert light["total"] == 729_327_880


def test_partial_or_wrong_mindeye2_state_names_what_is_wrong():
    sd = tiny_mindeye2(prior=False)
    missing = dict(sd)
    del missing["backbone.mixer_blocks1.1.1.3.bias"]
    with pytest.raises(WeightsError, match=r"1 missing: \['backbone.mixer_blocks1.1.1.3.bias'\]"):
        load_official_mindeye2(missing)
    extra = {**sd, "backbone.surprise.weight": torch.zeros(2)}
    with pytest.raises(WeightsError, match="backbone.surprise.weight"):
        load_official_mindeye2(extra)
    wrong = {**sd, "backbone.clip_proj.5.weight": torch.zeros(128, 64)}
    with pytest.raises(WeightsError, match=r"backbone.clip_proj.5.weight: file \(128, 64\)"):
        load_official_mindeye2(wrong)
    with pytest.raises(WeightsError, match="no MindEye2 network"):
        load_official_mindeye2({"foo": torch.zeros(1)})


def test_mindeye2_zero_folder_gives_the_same_model(tmp_path, fake_deepspeed):
    sd = tiny_mindeye2()
    fake_deepspeed.write_zero2(tmp_path / "ckpt", sd, tag="last", ranks=2)
    from_zero = load_official_mindeye2(tmp_path / "ckpt")
    from_dict = load_official_mindeye2(sd)
    for (k, a), (_, b) in zip(
        from_zero.model.state_dict().items(), from_dict.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    for (k, a), (_, b) in zip(
        from_zero.prior.state_dict().items(), from_dict.prior.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    fake_deepspeed.write_zero2(tmp_path / "fp16", sd, tag="t", ranks=1, with_optimizer=False)
    half = load_official_mindeye2(tmp_path / "fp16" / "t")
    w = half.model.state_dict()["backbone.backbone_linear.weight"]
    torch.testing.assert_close(w, sd["backbone.backbone_linear.weight"].half().float())


def test_zero_folder_errors(tmp_path, fake_deepspeed):
    sd = tiny_mindeye2(prior=False)
    fake_deepspeed.write_zero2(tmp_path / "ckpt", sd, tag="last", ranks=2)
    next((tmp_path / "ckpt" / "last").glob("zero_pp_rank_1_*")).unlink()
    with pytest.raises(WeightsError, match="saved by 2 ranks but holds 1 optimizer shards"):
        load_official_mindeye2(tmp_path / "ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="not a DeepSpeed ZeRO checkpoint"):
        load_official_mindeye2(tmp_path / "empty")


def test_mindeye1_prior_and_voxel2clip_from_one_prior_checkpoint(tmp_path):
    v2c = mindeye1_voxel2clip_shapes(30, 16, 2, 17, 128, proj=24, prefix="voxel2clip.")
    shapes = {**v2c, **prior_shapes("", 17, 128, heads=2, depth=1)}
    sd = materialize(shapes)
    torch.save({"model_state_dict": sd}, tmp_path / "prior.pth")
    prior = load_official_mindeye1_prior(tmp_path / "prior.pth")
    net = load_official_mindeye1(tmp_path / "prior.pth")
    assert prior.config.depth == 1 and net.config.n_voxels == 30
    cond = net(torch.randn(2, 30))[0]
    assert prior.sample(cond, steps=2, guidance=2.0).shape == (2, 17, 128)
    del sd["net.causal_transformer.layers.0.0.to_q.weight"]
    with pytest.raises(WeightsError, match="layers.0.0.to_q.weight"):
        load_official_mindeye1_prior(sd)


def test_full_size_mindeye1_prior_layout_on_meta():
    official = materialize(prior_shapes("", 257, 768, heads=12, depth=6), device="meta")
    with torch.device("meta"):
        prior = OfficialDiffusionPrior(MINDEYE1_PRIOR)
    renamed, unmatched = rename(official, [(r"^net\.", "net.")])
    assert unmatched == []
    assert not diff_state(
        {k: v for k, v in prior.state_dict().items() if k != "data_scale"}, renamed
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_mindeye1_lowlevel_loads_and_runs(legacy):
    sd = materialize(mindeye1_lowlevel_shapes(30, 16, 2, with_maps=True))
    if legacy:  # pre-2023 diffusers names of the decoder's mid-block attention
        for new, old in (
            ("to_q", "query"),
            ("to_k", "key"),
            ("to_v", "value"),
            ("to_out.0", "proj_attn"),
        ):
            for suffix in ("weight", "bias"):
                sd[f"upsampler.mid_block.attentions.0.{old}.{suffix}"] = sd.pop(
                    f"upsampler.mid_block.attentions.0.{new}.{suffix}"
                )
    model = load_official_mindeye1_lowlevel(sd)
    x = torch.randn(2, 30)
    with torch.no_grad():
        assert model(x).shape == (2, 4, 64, 64)
        assert model.maps(x).shape == (2, 256, 512)
        h = F.silu(
            F.layer_norm(
                F.linear(x, sd["lin0.0.weight"]), (16,), sd["lin0.1.weight"], sd["lin0.1.bias"]
            )
        )
        for i in range(2):
            blk = F.linear(h, sd[f"mlp.{i}.0.weight"])
            h = F.silu(F.layer_norm(blk, (16,), sd[f"mlp.{i}.1.weight"], sd[f"mlp.{i}.1.bias"])) + h
        seed = F.group_norm(
            F.linear(h, sd["lin1.weight"]).view(2, 64, 16, 16),
            1,
            sd["norm.weight"],
            sd["norm.bias"],
        )
        torch.testing.assert_close(model.seed_map(x), seed, rtol=1e-5, atol=1e-5)
    with pytest.raises(WeightsError, match="no MindEye1 low-level network"):
        load_official_mindeye1_lowlevel(materialize(mindeye1_voxel2clip_shapes(30, 16, 1, 17, 128)))


def test_mindeye1_part_counts():
    assert param_counts("mindeye1-prior")["total"] == 56_055_168
    assert param_counts("mindeye1-lowlevel")["total"] == 205_505_988
