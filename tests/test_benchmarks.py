"""Real-size unCLIP / low-level configs (counted on the meta device) and the recon benchmark.

Both live in ``benchmarks/`` (scripts, not a package): they are loaded here by file name, under
the module names the scripts use for each other (``import unclip_configs``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from rt_base.errors import ConfigError

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import ``benchmarks/NAME.py`` as module ``NAME`` (as its sibling scripts see it)."""
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and sibling imports look it up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@pytest.fixture(scope="module")
def uc():
    module = _load("unclip_configs")
    yield module
    sys.modules.pop("unclip_configs", None)


@pytest.fixture(scope="module")
def bench(uc):
    module = _load("bench_recon")
    yield module
    sys.modules.pop("bench_recon", None)


@pytest.fixture(scope="module")
def counts(uc):
    return uc.parameter_counts()


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def test_unet_is_sd21_plus_the_image_embedding_projection(counts):
    # unCLIP adds TimestepEmbedding(1536 -> 1280 -> 1280) for the noised image embedding
    projection = _linear(2 * 768, 1280) + _linear(1280, 1280)
    assert counts["unet.class_embedding"] == projection == 3_607_040
    # the rest is SD 2.1's UNet (865.9 M); the unCLIP-small hub's float32 unet file is 3.48 GB
    assert counts["unet"] - projection == 865_910_724
    assert abs(4 * counts["unet"] / 1e9 - 3.48) < 0.01


def test_vae_and_text_encoder_sizes(counts):
    # SD VAE: 83,653,863 parameters (float32 file 335 MB)
    assert counts["vae"] == counts["vae.encoder"] + counts["vae.decoder"] == 83_653_863
    assert abs(4 * counts["vae"] / 1e6 - 335) < 1
    # OpenCLIP ViT-H text tower, 23 layers of width 1024 (MLP 4096), 49,408 tokens, 77 positions
    d, f = 1024, 4096
    layer = 4 * _linear(d, d) + 2 * 2 * d + _linear(d, f) + _linear(f, d)
    text = 49408 * d + 77 * d + 23 * layer + 2 * d
    assert counts["text_encoder"] == text == 340_387_840
    assert counts["image_normalizer"] == 2 * 768
    assert counts["unclip_pipeline"] == sum(
        counts[k] for k in ("unet", "vae", "text_encoder", "image_normalizer")
    )


def test_lowlevel_head_matches_mindeye1_sizes(counts):
    from diffusers.models.autoencoders.vae import Decoder

    v, h = 15724, 4096
    mlp = _linear(v, h, False) + 2 * h + 4 * (_linear(h, h, False) + 2 * h)
    mlp += _linear(h, 64 * 16 * 16, False) + 2 * 64  # to a 64 x 16 x 16 map, GroupNorm(1, 64)
    assert counts["lowlevel_head.mlp"] == mlp
    with torch.device("meta"):
        decoder = Decoder(64, 4, ("UpDecoderBlock2D",) * 3, (64, 128, 256), layers_per_block=1)
    assert counts["lowlevel_head.upsampler"] == sum(p.numel() for p in decoder.parameters())
    assert counts["lowlevel_head"] == mlp + counts["lowlevel_head.upsampler"]
    assert 200e6 < counts["lowlevel_head"] < 210e6


def test_pipeline_on_meta_has_the_real_configuration(uc):
    from mindeye_models.unclip_pipeline import _check_compatible, embed_dim, image_size

    pipe = uc.build_unclip_small_pipeline(device="meta", dtype=torch.float16)
    _check_compatible(pipe, "real-size unCLIP")
    assert embed_dim(pipe) == 768 and image_size(pipe) == 768
    assert pipe.unet.device.type == "meta" and pipe.unet.dtype == torch.float16
    assert pipe.text_encoder.dtype == torch.float16 and pipe.vae.dtype == torch.float16
    cfg = pipe.unet.config
    assert tuple(cfg.block_out_channels) == (320, 640, 1280, 1280)
    assert tuple(cfg.attention_head_dim) == (5, 10, 20, 20)
    assert cfg.cross_attention_dim == 1024 and cfg.use_linear_projection
    assert pipe.text_encoder.config.num_hidden_layers == 23
    assert pipe.vae.config.scaling_factor == 0.18215
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.image_noising_scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert not any(p.requires_grad for p in pipe.unet.parameters())


def test_lowlevel_head_shapes_and_errors(uc):
    head = uc.MindEye1LowLevelHead(n_voxels=20, hidden=8, n_blocks=1).eval()
    with torch.no_grad():
        z = head(torch.randn(2, 20))
    assert z.shape == (2, *head.latent_shape) == (2, 4, 64, 64)
    with pytest.raises(ConfigError, match="20"):
        head(torch.randn(2, 21))
    with pytest.raises(ConfigError, match="dtype"):
        uc.build_sd_vae(device="meta", dtype=torch.int8)


def test_builders_are_seeded_and_leave_the_global_rng_alone(uc):
    state = torch.random.get_rng_state()
    weights = []
    for seed in (3, 3, 4):
        with uc._building("cpu", seed):
            weights.append(torch.nn.Linear(4, 4).weight)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_demo_benchmark_runs_end_to_end(bench, tmp_path, capsys):
    out = tmp_path / "recon.json"
    result = bench.main(
        ["--size", "demo", "--steps", "1,2", "--trials", "1", "--warmup", "0", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["device"] == "cpu" and result["threads"] == 1 and result["tr_s"] == 1.6
    cases = {(c["mode"], c["steps"]): c for c in result["cases"]}
    assert set(cases) == {("lowlevel", None), ("full", 1), ("full", 2)}
    assert set(cases["lowlevel", None]["parts_ms"]) == {"lowlevel"}
    assert set(cases["full", 1]["parts_ms"]) == {"lowlevel", "prior", "generator"}
    # strength 0.85: 1 step -> 1 UNet call, 2 steps -> round(1.7) = 2
    assert cases["full", 1]["unet_calls"] == 1 and cases["full", 2]["unet_calls"] == 2
    for c in cases.values():
        t = c["total_ms"]
        assert 0 < t["min"] <= t["p50"] <= t["p95"] <= t["max"] and math.isfinite(t["max"])
        assert sum(p["p50"] for p in c["parts_ms"].values()) == pytest.approx(t["p50"])
        assert c["trials_per_tr"] == pytest.approx(1600 / t["p50"])
    assert result["params"]["unet"] > 0 and result["params"]["prior"] > 0
    assert "trials/TR" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dtype", "float16"], "float16 is not supported on the CPU"),
        (["--prior-head-dtype", "float16"], "float16 is not supported on the CPU"),
        (["--steps", "0,2"], "--steps must be integers in 1 .. 1000"),
        (["--steps", "two"], "comma-separated integers"),
        (["--modes", "full,blurry"], "--modes must be a comma-separated subset"),
        (["--prior-steps", "101"], "--prior-steps must be in 1 .. 100"),
        (["--trials", "0"], "--trials must be an integer >= 1"),
        (["--device", "tpu"], "--device must be"),
    ],
)
def test_bad_options_are_refused_clearly(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--device", "cpu", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
