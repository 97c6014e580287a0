"""MindEye checkpoints: safetensors weights with a JSON sidecar.

Our format is two files side by side::

    NAME.safetensors   # the state dict (weights and the input-normalization buffers)
    NAME.json          # {"format", "version", "config": MindEyeConfig, "extra": {...}}

``extra`` carries what the caller wants to remember (training info, embedder name and
identity, dataset name, ...).  Nothing is ever unpickled.  The official MindEye1 / MindEye2
checkpoints are read by :mod:`mindeye_models.official_mindeye1` and
:mod:`mindeye_models.official_mindeye2` (``load_official_mindeye1`` is re-exported here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mindeye_models.model import MindEye
from mindeye_models.official_mindeye1 import load_official_mindeye1
from mindeye_models.presets import MindEyeConfig
from rt_base.atomic import write_text, write_with
from rt_base.errors import ConfigError, WeightsError

__all__ = ["load_checkpoint", "load_official_mindeye1", "read_sidecar", "save_checkpoint"]

FORMAT = "mindeye-rt-checkpoint"
VERSION = 1
_REMEDY = "train one with `mindeye-rt train` (or mindeye_models.model_cache.ensure_model)"


def _paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for ``NAME``, ``NAME.safetensors`` or ``NAME.json``."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def save_checkpoint(model: MindEye, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) and its JSON sidecar.

    Parameters
    ----------
    model : MindEye
    path : destination; the suffix is replaced by ``.safetensors`` / ``.json``.
    extra : JSON-able dict stored in the sidecar (training info, dataset, embedder ...).

    Returns
    -------
    The weights path.
    """
    from safetensors.torch import save_file

    weights, sidecar = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "config": model.config.to_dict()}
    meta["extra"] = {
        "embedder": model.config.embedder,
        "n_voxels": model.config.n_voxels,
        **(extra or {}),
    }
    try:
        text = json.dumps(meta, indent=2, sort_keys=True)
    except TypeError as err:
        raise ConfigError(f"'extra' must be JSON-serializable: {err}") from None
    write_with(weights, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    write_text(sidecar, text + "\n")
    return weights


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint (``config``, ``extra``, ...), without the weights."""
    weights, sidecar = _paths(path)
    for p in (weights, sidecar):
        if not p.is_file():
            raise WeightsError(f"no MindEye checkpoint at {str(p)!r}: {_REMEDY}")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"checkpoint sidecar {str(sidecar)!r} is unreadable: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{str(sidecar)!r} is not a {FORMAT} sidecar: {_REMEDY}")
    if meta.get("version") != VERSION:
        raise WeightsError(
            f"{str(sidecar)!r} has checkpoint format version {meta.get('version')!r}, this "
            f"build reads version {VERSION}: retrain, or use the mindeye-rt that wrote it"
        )
    return meta


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[MindEye, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model : MindEye in eval mode on ``device``.
    extra : the ``extra`` dict given at save time.

    Raises
    ------
    WeightsError
        Missing files, a foreign file, or weights that do not fit the recorded config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_sidecar(path)
    weights, sidecar = _paths(path)
    try:
        config = MindEyeConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, KeyError) as err:
        raise WeightsError(f"{str(sidecar)!r} holds an invalid MindEye config: {err}") from err
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{str(weights)!r} is not a readable safetensors file: {err}") from err
    model = MindEye(config)
    _load_state(model, state, str(weights))
    return model.to(device).eval(), meta.get("extra", {})


def _load_state(model: MindEye, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with shape checks that raise :class:`WeightsError`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights in {where} do not fit a MindEye with {model.config}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}; the file "
            "belongs to another model size, retrain or pick the matching checkpoint"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
