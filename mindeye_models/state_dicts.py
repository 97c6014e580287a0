"""Reading weight files without unpickling code, and strict loads that say what does not fit.

Every weights file is read with ``torch.load(weights_only=True)`` (or safetensors).  Files that
training frameworks wrote (DeepSpeed, accelerate) also pickle small bookkeeping objects (a loss
scaler, an enum of the ZeRO stage); :func:`torch_load` lets those through as inert
placeholders, :class:`Inert`, that run no code of the file, only for the module prefixes in
:data:`INERT_PREFIXES`.  Anything else that is not plain data is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rt_base.errors import WeightsError

# Bookkeeping classes that training frameworks pickle next to the weights.
INERT_PREFIXES = ("deepspeed.", "accelerate.", "argparse.Namespace", "torch.optim.lr_scheduler.")
_WRAPPERS = ("model_state_dict", "state_dict", "module", "model")


class Inert:
    """Stands in for a pickled object of an allowed bookkeeping class; keeps its data only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Inert(args={self.args!r})"


def torch_load(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with :class:`Inert` placeholders.

    Raises
    ------
    WeightsError
        A missing or unreadable file, or one that pickles classes outside
        :data:`INERT_PREFIXES` (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # not a zip checkpoint, truncated ...
        raise WeightsError(
            f"{str(path)!r} could not be read with torch.load(weights_only=True): {err}"
        ) from err
    refused = [name for name in unsafe if not name.startswith(INERT_PREFIXES)]
    if refused:
        raise WeightsError(
            f"{str(path)!r} could not be read with torch.load(weights_only=True): it pickles "
            f"{refused[:5]}, which is not plain data; save the state dict alone "
            "(torch.save(model.state_dict(), ...)) or convert it to safetensors"
        )
    try:
        with torch.serialization.safe_globals([(Inert, name) for name in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise WeightsError(
            f"{str(path)!r} could not be read with torch.load(weights_only=True): {err}"
        ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt``/``.bin``/``.safetensors`` file, wrappers removed.

    A dict under ``model_state_dict``, ``state_dict``, ``module`` or ``model`` (what training
    scripts save next to optimizer states) is unwrapped; non-tensor entries are dropped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not path.is_file():
            raise WeightsError(f"weights file {str(path)!r} does not exist")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{str(path)!r} is not a readable safetensors file: {err}") from err
    return unwrap_state(torch_load(path), repr(str(path)))


def unwrap_state(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The tensor entries of ``obj``, looking inside the usual wrapper keys."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{where} holds a {type(obj).__name__}, not a state dict")
    for key in _WRAPPERS:
        if isinstance(obj.get(key), dict) and not isinstance(obj.get(key), torch.Tensor):
            return unwrap_state(obj[key], where)
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


@dataclass
class StateDiff:
    """How a state dict differs from a module's: key names and shapes."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for label, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatches", self.wrong_shape),
        ):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {label}: {items[:limit]}{more}")
        return "; ".join(parts) or "no differences"


def diff_state(
    expected: dict[str, torch.Tensor],
    given: dict[str, torch.Tensor],
    name: Callable[[str], str] = str,
) -> StateDiff:
    """Missing and unexpected keys and shape mismatches of ``given`` against ``expected``.

    ``name`` turns a key into the name the message shows (the file's own name for a key that
    was renamed on loading).
    """
    return StateDiff(
        missing=sorted(name(k) for k in set(expected) - set(given)),
        unexpected=sorted(name(k) for k in set(given) - set(expected)),
        wrong_shape=[
            f"{name(k)}: file {tuple(given[k].shape)} vs model {tuple(v.shape)}"
            for k, v in expected.items()
            if k in given and tuple(given[k].shape) != tuple(v.shape)
        ],
    )


def load_exactly(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    where: str,
    remedy: str,
    name: Callable[[str], str] = str,
) -> None:
    """Load ``state`` into ``module`` only if names and shapes match exactly.

    Tensors are cast to the module's dtypes (official files are often float16).

    Raises
    ------
    WeightsError
        Listing the missing and unexpected keys and the shape mismatches (as ``name`` shows
        them), then ``remedy``.
    """
    own = module.state_dict()
    diff = diff_state(own, state, name)
    if diff:
        raise WeightsError(
            f"{where} does not fit {type(module).__name__}: {diff.describe()}; {remedy}"
        )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
