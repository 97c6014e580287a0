"""The arithmetic of the real-time forward pass: float32, or int8 weights on the CPU.

At batch size 1 the forward pass of a MindEye backbone is a chain of matrix-vector products, so
its time on a CPU is the time to read the weights from memory: the demo model's first layer
alone (15,724 x 1,024 float32) is 64 MB per trial.  ``int8`` stores every ``nn.Linear``'s
weights as 8-bit integers with one scale per output row and quantises each activation on the
fly (PyTorch's dynamic quantisation, its fbgemm/x86 kernels): a quarter of the bytes to read.
LayerNorms, GELUs and the bank search stay float32.  ``benchmarks/bench_decode.py`` measures
the time and how often the top-k retrieval differs from float32's.

Dynamic quantisation has CPU kernels only; a GPU is fast enough in float32.
"""

from __future__ import annotations

import copy
import warnings

from rt_base.checks import check_choice
from rt_base.errors import ConfigError

__all__ = ["PRECISIONS", "for_inference"]

#: decode arithmetic: ``fp32`` (the trained weights as they are) or ``int8`` (CPU only)
PRECISIONS = ("fp32", "int8")


def for_inference(model, precision: str, device: str = "cpu"):
    """``model`` (in eval mode) ready for the real-time forward pass at ``precision``.

    ``fp32`` returns ``model`` itself; ``int8`` returns a dynamically quantised copy (the
    original is left as it is).

    Raises
    ------
    ConfigError
        For an unknown precision, ``int8`` on a device other than the CPU, or a PyTorch build
        without a quantised CPU engine.
    """
    import torch

    check_choice(precision, "decode_precision", PRECISIONS)
    if precision == "fp32":
        return model
    if torch.device(device).type != "cpu":
        raise ConfigError(
            f"'decode_precision' int8 runs on the CPU only, got device {device!r}: use fp32 on "
            "a GPU (it is fast enough there) or decode on the CPU"
        )
    engines = [e for e in ("x86", "fbgemm") if e in torch.backends.quantized.supported_engines]
    if not engines:
        raise ConfigError(
            "'decode_precision' int8 needs PyTorch's x86/fbgemm quantised engine, which this "
            f"build lacks (it has {torch.backends.quantized.supported_engines}): use fp32"
        )
    torch.backends.quantized.engine = engines[0]
    with warnings.catch_warnings():  # torch.ao's notice that the API moves to torchao one day
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        per_row = torch.ao.quantization.per_channel_dynamic_qconfig
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {torch.nn.Linear: per_row}, dtype=torch.qint8
        )
    return quantized
