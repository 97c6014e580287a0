"""The real-time forward pass at float32 or int8 (mindeye_models.decode_precision)."""

from __future__ import annotations

import pytest
import torch

from mindeye_models.decode_precision import for_inference
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from rt_base.errors import ConfigError


@pytest.fixture(scope="module")
def model() -> MindEye:
    torch.manual_seed(0)
    return MindEye(get_preset("tiny", n_voxels=300)).eval()


def test_fp32_is_the_model_itself(model):
    assert for_inference(model, "fp32") is model


def test_int8_quantises_every_linear_layer_of_a_copy_and_stays_close(model):
    quantized = for_inference(model, "int8")
    assert quantized is not model
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())
    assert any(type(m) is torch.nn.Linear for m in model.modules())  # the original is intact
    x = torch.randn(8, 300, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref_tokens, ref = model(x)
        tokens, out = quantized(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1))
    assert cos.min() > 0.99, cos
    assert not torch.equal(out, ref)  # it did change the arithmetic
    assert quantized.config == model.config  # the stage reads the voxel count from it


@pytest.mark.parametrize(
    ("precision", "device", "match"),
    [("bf16", "cpu", "decode_precision"), ("int8", "cuda", "CPU only"), (8, "cpu", "one of")],
)
def test_bad_choices_are_config_errors(model, precision, device, match):
    with pytest.raises(ConfigError, match=match):
        for_inference(model, precision, device)
