"""Writes DeepSpeed ZeRO stage-2 checkpoint folders without DeepSpeed, in its file layout.

The files pickle stand-ins of DeepSpeed's bookkeeping classes under their real module paths
(a loss scaler, the ZeRO stage enum), so reading them exercises the inert placeholders.
"""

from __future__ import annotations

import enum
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch

_MODULES = ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.fp16",
            "deepspeed.runtime.fp16.loss_scaler", "deepspeed.runtime.zero",
            "deepspeed.runtime.zero.config")  # fmt: skip


class DynamicLossScaler:
    def __init__(self) -> None:
        self.cur_scale = 65536.0
        self.cur_iter = 12


class ZeroStageEnum(enum.IntEnum):
    disabled = 0
    optimizer_states = 1
    gradients = 2


DynamicLossScaler.__module__ = "deepspeed.runtime.fp16.loss_scaler"
ZeroStageEnum.__module__ = "deepspeed.runtime.zero.config"


class FakeDeepSpeed:
    """``write_zero2(folder, state, tag, ranks)``: a ZeRO-2 folder holding ``state``."""

    def _register(self) -> None:
        for name in _MODULES:
            sys.modules[name] = types.ModuleType(name)
        sys.modules["deepspeed.runtime.fp16.loss_scaler"].DynamicLossScaler = DynamicLossScaler
        sys.modules["deepspeed.runtime.zero.config"].ZeroStageEnum = ZeroStageEnum

    def _unregister(self) -> None:
        for name in _MODULES:
            sys.modules.pop(name, None)

    def write_zero2(self, folder, state, tag="last", ranks=2, with_optimizer=True) -> Path:
        folder = Path(folder)
        (folder / tag).mkdir(parents=True)
        (folder / "latest").write_text(tag)
        buffers = [k for k in state if "noise_scheduler." in k]
        frozen = {k: v for k, v in state.items() if k.endswith("rotary_emb.freqs")}
        params = OrderedDict(
            (k, v) for k, v in state.items() if k not in buffers and k not in frozen
        )
        self._register()
        try:
            torch.save(
                {
                    "module": {k: v.half() for k, v in state.items()},
                    "buffer_names": buffers,
                    "param_shapes": [OrderedDict((k, v.shape) for k, v in params.items())],
                    "frozen_param_shapes": OrderedDict((k, v.shape) for k, v in frozen.items()),
                    "frozen_param_fragments": dict(frozen),
                    "shared_params": {},
                    "lr_scheduler": None,
                    "sparse_tensor_module_names": set(),
                    "global_steps": 10,
                    "ds_config": {"zero_optimization": {"stage": 2}},
                    "ds_version": "0.12.6",
                },
                folder / tag / "mp_rank_00_model_states.pt",
            )
            if with_optimizer:
                flat = torch.cat([v.float().reshape(-1) for v in params.values()])
                align = 2 * ranks
                padded = -(-flat.numel() // align) * align
                flat = torch.cat([flat, flat.new_zeros(padded - flat.numel())])
                for r, part in enumerate(flat.chunk(ranks)):
                    torch.save(
                        {
                            "optimizer_state_dict": {
                                "zero_stage": ZeroStageEnum.gradients,
                                "partition_count": ranks,
                                "loss_scaler": DynamicLossScaler(),
                                "single_partition_of_fp32_groups": [part.clone()],
                                "base_optimizer_state": {"state": {}, "param_groups": []},
                            },
                            "ds_version": "0.12.6",
                        },
                        folder / tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt",
                    )
        finally:
            self._unregister()
        return folder
