"""MindEye checkpoints: safetensors weights with a JSON sidecar, and the official MindEye1 ones.

Our format is two files side by side::

    NAME.safetensors   # the state dict (weights and the input-normalization buffers)
    NAME.json          # {"format", "version", "config": MindEyeConfig, "extra": {...}}

``extra`` carries what the caller wants to remember (training info, embedder name and
identity, dataset name, ...).  Nothing is ever unpickled: official ``.pth`` files are read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from mindeye_models.embedder import EMBEDDERS
from mindeye_models.model import MindEye
from mindeye_models.presets import MindEyeConfig
from rt_base.atomic import write_text, write_with
from rt_base.errors import ConfigError, WeightsError

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


# --- official MindEye1 checkpoints ---------------------------------------------------------

_RENAMES = (
    (re.compile(r"^lin0\."), "backbone.lin0."),
    (re.compile(r"^mlp\."), "backbone.blocks."),
    (re.compile(r"^lin1\."), "backbone.lin1."),
    (re.compile(r"^projector\."), "projector."),
)


def _official_state(source: str | Path | dict[str, Any]) -> dict[str, torch.Tensor]:
    """The voxel2clip ``BrainNetwork`` tensors of an official file or dict, prefixes removed."""
    if isinstance(source, dict):
        state, where = source, "the given state dict"
    else:
        p = Path(source)
        if not p.is_file():
            raise WeightsError(
                f"no official MindEye checkpoint at {str(p)!r}: download the voxel2clip / "
                "prior checkpoint of the subject (e.g. from the MindEye1 release) to that path"
            )
        where = repr(str(p))
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            try:
                state = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as err:  # pickle refusal, truncated file ...
                raise WeightsError(
                    f"{where} could not be read with torch.load(weights_only=True): {err}"
                ) from err
    for key in ("model_state_dict", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    out: dict[str, torch.Tensor] = {}
    # A BrainDiffusionPrior checkpoint nests the network under "voxel2clip.".
    prior = any(str(k).removeprefix("module.").startswith("voxel2clip.") for k in state)
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        k = str(k).removeprefix("module.")
        if prior:
            if not k.startswith("voxel2clip."):
                continue
            k = k.removeprefix("voxel2clip.")
        out[k] = v
    if "lin0.0.weight" not in out or "lin1.weight" not in out:
        raise WeightsError(
            f"{where} holds no MindEye1 voxel2clip tensors (expected keys 'lin0.*', 'mlp.*', "
            "'lin1.*', 'projector.*'): pass the BrainNetwork or BrainDiffusionPrior checkpoint"
        )
    if "lin0.1.running_mean" in out or "lin0.2.weight" in out:
        raise WeightsError(
            f"{where} is a BatchNorm or activation-first BrainNetwork variant; only the "
            "paper's LayerNorm-then-GELU network (norm_type='ln', act_first=False) is supported"
        )
    if "projector.0.weight" not in out:
        raise WeightsError(f"{where} has no projector (use_projector=False): not supported")
    return out


def load_official_mindeye1(
    source: str | Path | dict[str, Any], *, embedder: str | None = None, device: str = "cpu"
) -> MindEye:
    """Load an official MindEye1 voxel2clip checkpoint into :class:`MindEye`.

    Accepts a ``BrainNetwork`` state dict (keys ``lin0.*``, ``mlp.*``, ``lin1.*``,
    ``projector.*``), the same under ``model_state_dict`` or with a ``voxel2clip.`` prefix (a
    ``BrainDiffusionPrior`` checkpoint; its prior tensors are ignored), as a file or a dict.
    Sizes are read off the tensor shapes.  The official inputs were z-scored upstream, so the
    input normalization is left at identity.

    Parameters
    ----------
    source : path to a ``.pth``/``.pt``/``.safetensors`` file, or a state dict.
    embedder : name of the embedder of the targets; None picks the one whose token shape
        matches (``ViT-L-14`` for 257 x 768).
    device : torch device string.
    """
    state = _official_state(source)
    n_voxels = state["lin0.0.weight"].shape[1]
    hidden = state["lin0.0.weight"].shape[0]
    n_blocks = len({k.split(".")[1] for k in state if k.startswith("mlp.")})
    clip_dim = state["projector.0.weight"].shape[0]
    proj_hidden = state["projector.2.weight"].shape[0]
    out_dim = state["lin1.weight"].shape[0]
    if out_dim % clip_dim:
        raise WeightsError(f"lin1 outputs {out_dim} values, not a multiple of clip_dim {clip_dim}")
    n_tokens = out_dim // clip_dim
    if embedder is None:
        matches = [n for n, c in EMBEDDERS.items() if c.token_shape == (n_tokens, clip_dim)]
        if not matches:
            raise WeightsError(
                f"no known embedder makes {n_tokens} x {clip_dim} tokens (the checkpoint's "
                f"target space); known: { {n: c.token_shape for n, c in EMBEDDERS.items()} }"
            )
        embedder = matches[0]
    try:
        config = MindEyeConfig(
            n_voxels=n_voxels,
            hidden=hidden,
            n_blocks=n_blocks,
            n_tokens=n_tokens,
            clip_dim=clip_dim,
            proj_hidden=proj_hidden,
            embedder=embedder,
            name="mindeye1-official",
        )
    except ConfigError as err:
        raise WeightsError(f"the official checkpoint does not fit a MindEye config: {err}") from err
    renamed = {}
    for k, v in state.items():
        for pattern, new in _RENAMES:
            if pattern.match(k):
                renamed[pattern.sub(new, k)] = v
                break
    model = MindEye(config)
    renamed["input_mean"] = model.input_mean.clone()
    renamed["input_std"] = model.input_std.clone()
    _load_state(model, renamed, "the official MindEye1 checkpoint")
    return model.to(device).eval()
