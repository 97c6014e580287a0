"""Where official MindEye weights come from: a file, a DeepSpeed ZeRO folder, or a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mindeye_models.official_keys import drop_wrapper_prefix
from mindeye_models.state_dicts import read_state_dict, unwrap_state
from mindeye_models.zero_checkpoint import is_zero_folder, read_zero_checkpoint
from rt_base.errors import WeightsError


def read_official_state(source: str | Path | dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint, wrappers and a ``module.`` prefix removed.

    Parameters
    ----------
    source : a ``.pth``/``.pt``/``.bin``/``.safetensors`` file (read with
        ``torch.load(weights_only=True)`` or safetensors), a DeepSpeed ZeRO checkpoint folder,
        or an in-memory state dict (optionally under ``model_state_dict``).
    what : what the caller expects, for the error message (e.g. "MindEye2 checkpoint").
    """
    if isinstance(source, dict):
        state = unwrap_state(source, "the given state dict")
    else:
        path = Path(source)
        if path.is_dir():
            if not is_zero_folder(path):
                raise WeightsError(
                    f"{str(path)!r} is a folder but not a DeepSpeed ZeRO checkpoint (no 'latest' "
                    f"or mp_rank_00_model_states.pt): pass the {what} file or its ZeRO folder"
                )
            state = read_zero_checkpoint(path)
        elif not path.is_file():
            raise WeightsError(
                f"no official {what} at {str(path)!r}: download it from the MindEye release "
                "(see docs/official_checkpoints.md) and pass its path"
            )
        else:
            state = read_state_dict(path)
    return drop_wrapper_prefix(state)
