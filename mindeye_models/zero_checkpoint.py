"""DeepSpeed ZeRO checkpoint folders, read with torch alone (no DeepSpeed, nothing unpickled).

MindEye2 was trained with accelerate + DeepSpeed ZeRO stage 2; when a checkpoint was saved in
DeepSpeed's own form it is a folder::

    CKPT/latest                                      # text: the tag, e.g. "last"
    CKPT/TAG/mp_rank_00_model_states.pt              # {"module": state dict (fp16 copies),
                                                     #  "buffer_names", "param_shapes", ...}
    CKPT/TAG/zero_pp_rank_R_mp_rank_00_optim_states.pt   # one per data-parallel rank R:
        {"optimizer_state_dict": {"zero_stage", "partition_count",
                                  "single_partition_of_fp32_groups": [flat fp32 shard, ...]}}

The fp32 master weights are the rank shards of each parameter group concatenated, cut in the
order of ``param_shapes`` (DeepSpeed pads each group's end to a multiple of twice the number
of ranks).  Without the optimizer shards, the ``module`` copies (float16 when trained in
mixed precision) are used.  ZeRO stage 3 partitions every parameter and is refused: convert
it once with DeepSpeed's own ``zero_to_fp32.py`` and pass the resulting file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from mindeye_models.state_dicts import Inert, torch_load, unwrap_state
from rt_base.errors import WeightsError

MODEL_STATES = "mp_rank_00_model_states.pt"
_ZERO3_STATES = "zero_pp_rank_0_mp_rank_00_model_states.pt"


def is_zero_folder(path: str | Path) -> bool:
    """True when ``path`` is a ZeRO checkpoint folder (with ``latest``) or one of its tags."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (path / "latest").is_file() or any(
        (path / name).is_file() for name in (MODEL_STATES, _ZERO3_STATES)
    )


def _tag_folder(path: Path) -> Path:
    if (path / MODEL_STATES).is_file() or (path / _ZERO3_STATES).is_file():
        return path
    latest = path / "latest"
    if latest.is_file():
        tag = latest.read_text().strip()
        if tag and (path / tag).is_dir():
            return path / tag
        raise WeightsError(f"{str(latest)!r} names tag {tag!r}, but {str(path / tag)!r} is missing")
    raise WeightsError(
        f"{str(path)!r} is not a DeepSpeed ZeRO checkpoint folder: expected 'latest' and "
        f"TAG/{MODEL_STATES}, or {MODEL_STATES} in the folder itself"
    )


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _as_int(value: Any, name: str, where: str) -> int:
    """An int from a plain int, or from an enum that was read as an :class:`Inert`."""
    if isinstance(value, Inert) and value.args:
        value = value.args[0]
    if isinstance(value, list):
        value = max(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise WeightsError(f"{where} has an unreadable '{name}': {value!r}") from None


def _merge_zero2(shards: list[list[torch.Tensor]], param_shapes: list, where: str) -> dict:
    """fp32 tensors by name from the per-rank flat shards of each parameter group."""
    out: dict[str, torch.Tensor] = {}
    world = len(shards)
    for group, shapes in enumerate(param_shapes):
        flat = torch.cat([rank[group].reshape(-1) for rank in shards]).float()
        offset = 0
        for name, shape in shapes.items():
            numel = math.prod(shape)
            if offset + numel > flat.numel():
                raise WeightsError(
                    f"{where}: parameter group {group} holds {flat.numel()} values, too few for "
                    f"its parameters (at {name!r}); the optimizer shards are incomplete"
                )
            out[name] = flat[offset : offset + numel].view(tuple(shape)).clone()
            offset += numel
        align = 2 * world
        if math.ceil(offset / align) * align != math.ceil(flat.numel() / align) * align:
            raise WeightsError(
                f"{where}: parameter group {group} holds {flat.numel()} values for {offset} "
                "parameters; the shards belong to another model or another number of ranks"
            )
    return out


def read_zero_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The full state dict of a DeepSpeed ZeRO (stage 1 or 2) checkpoint folder.

    Parameters
    ----------
    path : the checkpoint folder (with ``latest``) or its tag folder.

    Returns
    -------
    {name: tensor}: parameters in fp32 (from the optimizer shards when present, else the
    ``module`` copies cast to fp32) and the buffers.

    Raises
    ------
    WeightsError
        A folder that is not a ZeRO checkpoint, a stage-3 one, or missing/incomplete shards.
    """
    folder = _tag_folder(Path(path))
    where = repr(str(folder))
    if not (folder / MODEL_STATES).is_file():
        raise WeightsError(
            f"{where} is a ZeRO stage-3 checkpoint (partitioned parameters): convert it with "
            "DeepSpeed's zero_to_fp32.py and pass the resulting file"
        )
    states = torch_load(folder / MODEL_STATES)
    if not isinstance(states, dict) or not isinstance(states.get("module"), dict):
        raise WeightsError(f"{str(folder / MODEL_STATES)!r} holds no 'module' state dict")
    module = unwrap_state({"module": states["module"]}, where)
    optim_files = sorted(folder.glob("*_optim_states.pt"), key=_natural)
    param_shapes = states.get("param_shapes")
    if not optim_files or not param_shapes:
        empty = [k for k, v in module.items() if v.numel() == 0]
        if empty:
            raise WeightsError(
                f"{where}: the 'module' tensors {empty[:5]} are empty and there are no optimizer "
                "shards to rebuild them from"
            )
        return {k: v.float() if v.is_floating_point() else v for k, v in module.items()}
    shards = []
    stage = world = None
    for file in optim_files:
        optim = torch_load(file, mmap=True).get("optimizer_state_dict", {})
        if "single_partition_of_fp32_groups" not in optim:
            raise WeightsError(
                f"{str(file)!r} has no 'single_partition_of_fp32_groups': not a ZeRO stage 1/2 "
                "optimizer shard"
            )
        stage = _as_int(optim.get("zero_stage", 2), "zero_stage", str(file))
        world = _as_int(optim.get("partition_count", len(optim_files)), "partition_count", where)
        shards.append(list(optim["single_partition_of_fp32_groups"]))
    if stage is not None and stage > 2:
        raise WeightsError(
            f"{where} is a ZeRO stage-{stage} checkpoint: only stages 1 and 2 are read"
        )
    if world != len(optim_files):
        raise WeightsError(
            f"{where} was saved by {world} ranks but holds {len(optim_files)} optimizer shards: "
            "a shard is missing or left over from another run"
        )
    state = _merge_zero2(shards, list(param_shapes), where)
    buffers = states.get("buffer_names") or []
    for name in buffers:
        if name in module:
            state[name] = module[name].float() if module[name].is_floating_point() else module[name]
    frozen = states.get("frozen_param_fragments") or {}
    state.update({k: v.float() for k, v in frozen.items() if isinstance(v, torch.Tensor)})
    return state
