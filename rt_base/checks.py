"""Argument checks that produce messages naming the argument, the rule, the value and a remedy."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rt_base.errors import ConfigError


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    integer: bool = False,
    unit: str = "",
) -> float | int:
    """Validate a number and return it (as ``int`` when ``integer``).

    Raises
    ------
    ConfigError
        "'tr' must be a positive number of seconds, got -1.6".
    """
    noun = "integer" if integer else "number"
    of = f" of {unit}" if unit else ""
    if isinstance(value, bool):  # float(True) == 1.0: a TOML `speed = true` is a mistake
        raise ConfigError(f"'{name}' must be a{'n' if integer else ''} {noun}{of}, got {value!r}")
    if not isinstance(value, (int, float)):
        try:
            value = int(value) if integer else float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"'{name}' must be a{'n' if integer else ''} {noun}{of}, got {value!r}"
            ) from None
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"'{name}' must be an integer{of}, got {value!r}")
        value = int(value)
    elif not math.isfinite(value):
        raise ConfigError(f"'{name}' must be a finite number{of}, got {value!r}")
    if minimum is not None:
        bad = value <= minimum if strict_min else value < minimum
        if bad:
            if minimum == 0:
                what = f"a {'positive' if strict_min else 'non-negative'} {noun}{of}"
            else:
                what = (
                    f"a{'n' if integer else ''} {noun}{of} {'>' if strict_min else '>='} {minimum}"
                )
            raise ConfigError(f"'{name}' must be {what}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(
            f"'{name}' must be a{'n' if integer else ''} {noun}{of} <= {maximum}, got {value!r}"
        )
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Validate that ``value`` is one of ``choices`` and return it."""
    choices = list(choices)
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"'{name}' must be one of {shown}, got {value!r}")
    return value


def check_address(value: Any, name: str) -> str:
    """Validate a ZMQ endpoint such as ``tcp://127.0.0.1:5555`` or ``ipc:///tmp/x``."""
    if not isinstance(value, str) or "://" not in value:
        raise ConfigError(
            f"'{name}' must be a ZMQ endpoint like 'tcp://127.0.0.1:5555' or 'ipc:///tmp/name', "
            f"got {value!r}"
        )
    scheme = value.split("://", 1)[0]
    if scheme not in ("tcp", "ipc", "inproc"):
        raise ConfigError(f"'{name}' must use tcp://, ipc:// or inproc://, got {value!r}")
    return value


def check_torch_device(device: Any, name: str = "device") -> str:
    """``device`` if it names a torch device that exists here (cpu, cuda[:N], mps).

    Raises
    ------
    ConfigError
        For a malformed name, another device type, or CUDA on a machine without it.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"'{name}' must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"'{name}' must be cpu, cuda[:N] or mps, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"'{name}' is {device!r} but no CUDA device is available: use 'cpu'")
    return device


PATH_KINDS = ("file", "dir", "any")


def check_path(
    value: Any,
    name: str,
    *,
    kind: str = "any",
    must_exist: bool = True,
    remedy: str = "",
) -> Path:
    """Validate a filesystem path argument and return it as a user-expanded :class:`Path`.

    Parameters
    ----------
    value : str or os.PathLike
        The path as given by the user.
    name : str
        The option's name, used in the message.
    kind : ``"file"``, ``"dir"`` or ``"any"``
        What an existing path must be.
    must_exist : bool
        Refuse a path that does not exist (else only its type is checked when it exists).
    remedy : str
        What to do about it, appended to the message.

    Raises
    ------
    ConfigError
        "'checkpoint' must be an existing file, got '/x.safetensors' (not found): train one ...".
    """
    check_choice(kind, "kind", PATH_KINDS)
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"'{name}' must be a path, got {value!r}")
    path = Path(value).expanduser()
    what = {"file": "file", "dir": "folder", "any": "path"}[kind]
    tail = f": {remedy}" if remedy else ""
    if not path.exists():
        if must_exist:
            raise ConfigError(
                f"'{name}' must be an existing {what}, got {str(value)!r} (not found){tail}"
            )
        return path
    if (kind == "file" and not path.is_file()) or (kind == "dir" and not path.is_dir()):
        found = "a folder" if path.is_dir() else "not a folder"
        raise ConfigError(f"'{name}' must be a {what}, got {str(value)!r} ({found}){tail}")
    return path
