"""The reconstruction-bundle format: what MindEye needs besides its backbone to draw a trial.

A bundle is one safetensors file (weights, never pickled) with a JSON sidecar
(``NAME.safetensors.json``), and holds one or both of two *parts*:

* ``lowlevel`` -- the low-level head (:class:`~mindeye_models.lowlevel.LowLevelHead`, voxels ->
  autoencoder latents) and its autoencoder: a
  :class:`~mindeye_models.autoencoders.TinyAutoencoder` stored in the bundle, or a reference to a
  local diffusers VAE directory.  Every reconstruction mode draws the blurry image with it.
* ``prior`` -- the diffusion prior (:class:`~mindeye_models.prior.DiffusionPrior`), which only
  ``full`` mode runs.

So a bundle trained for ``lowlevel`` sessions is valid without a prior; a later ``full`` session
adds one to the same file (:func:`mindeye_models.recon_training.ensure_recon_models`).

Sidecar::

    {"format": FORMAT, "version": BUNDLE_VERSION, "token_shape": [T, D],
     "lowlevel": {"head_config": {...}, "autoencoder": {...}, "info": {...}},   # if present
     "prior": {"config": {...}, "info": {...}},                                 # if present
     "extra": {...}}   # the checkpoint and data it belongs to

Each part's ``info`` records how it was trained and its held-out figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindeye_models.autoencoders import AutoencoderConfig, TinyAutoencoder, load_autoencoder
from mindeye_models.lowlevel import LowLevelConfig, LowLevelHead
from mindeye_models.prior import DiffusionPrior, PriorConfig
from rt_base.atomic import write_json, write_with
from rt_base.errors import ConfigError, WeightsError
from rt_base.hashing import file_sha256

FORMAT = "mindeye-rt-recon-bundle"
#: 2: parts (``lowlevel``, ``prior``), each optional; 1 held all three modules
BUNDLE_VERSION = 2
PARTS = ("lowlevel", "prior")
_PART_NAMES = {"lowlevel": "low-level head and autoencoder", "prior": "diffusion prior"}
_NEEDED_BY = {"lowlevel": "every reconstruction mode", "prior": "recon mode 'full'"}


class ReconBundle:
    """The reconstruction models of one MindEye checkpoint, in parts (see the module notes).

    Parameters
    ----------
    token_shape : ``(T, D)`` of the checkpoint's backbone tokens (the prior's condition and
        output; ``D`` is the width of the image embeddings a generator must take).
    head, autoencoder : the ``lowlevel`` part (both or neither).  The autoencoder is a
        ``TinyAutoencoder`` or ``DiffusersAutoencoder`` (``encode_images``/``decode_latents``).
    prior : the ``prior`` part, or None.
    info : the checkpoint and data the bundle belongs to (the sidecar's ``extra``).
    part_info : per part, how it was trained and its held-out figures.
    """

    def __init__(
        self,
        token_shape: tuple[int, int],
        *,
        head: Any = None,
        autoencoder: Any = None,
        prior: Any = None,
        info: dict[str, Any] | None = None,
        part_info: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if (head is None) != (autoencoder is None):
            raise ConfigError("a bundle's low-level part needs both 'head' and 'autoencoder'")
        self.token_shape = (int(token_shape[0]), int(token_shape[1]))
        if prior is not None and tuple(prior.config.token_shape) != self.token_shape:
            raise ConfigError(
                f"'prior' denoises {prior.config.token_shape} tokens, the bundle's checkpoint "
                f"makes {self.token_shape}: use a prior preset of the checkpoint's token shape"
            )
        self.head, self.autoencoder, self.prior = head, autoencoder, prior
        self.path: Path | None = None  # the file it was loaded from or saved to
        self.info = dict(info or {})
        self.part_info = {k: dict(v) for k, v in (part_info or {}).items() if k in self.parts}

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts this bundle holds, of :data:`PARTS`."""
        held = {"lowlevel": self.head is not None, "prior": self.prior is not None}
        return tuple(p for p in PARTS if held[p])

    def modules(self, part: str) -> dict[str, Any]:
        """The modules of ``part`` by keyword (``prior``; ``head`` and ``autoencoder``)."""
        if part == "prior":
            return {"prior": self.prior}
        return {"head": self.head, "autoencoder": self.autoencoder}

    def require(self, *parts: str) -> None:
        """Raise :class:`WeightsError` naming the first of ``parts`` this bundle lacks."""
        where = "these reconstruction models"
        if self.path is not None:
            where = f"reconstruction models {str(self.path)!r}"
        for part in parts:
            if part not in self.parts:
                raise WeightsError(missing_part_message(part, where))

    def to(self, device: str | torch.device) -> ReconBundle:
        """Move every part to ``device``; returns ``self``."""
        for module in (self.prior, self.head, self.autoencoder):
            if module is not None:
                module.to(device)
        return self

    @torch.no_grad()
    def blurry(self, voxels: torch.Tensor) -> np.ndarray:
        """(B, V) voxels -> (B, S, S, 3) uint8 low-level reconstructions."""
        self.require("lowlevel")
        return self.autoencoder.decode_latents(self.head(voxels))

    def save(self, path: str | Path) -> Path:
        """Write the weights (``path``, safetensors) and the sidecar, each atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            f"{name}.{k}": v.detach().cpu().contiguous()
            for name, module in self._stored_modules().items()
            for k, v in module.state_dict().items()
        }
        sidecar: dict[str, Any] = {
            "format": FORMAT,
            "version": BUNDLE_VERSION,
            "token_shape": list(self.token_shape),
        }
        if self.head is not None:
            sidecar["lowlevel"] = {
                "head_config": asdict(self.head.config),
                "autoencoder": _autoencoder_record(self.autoencoder),
                "info": self.part_info.get("lowlevel", {}),
            }
        if self.prior is not None:
            sidecar["prior"] = {
                "config": self.prior.config.to_dict(),
                "info": self.part_info.get("prior", {}),
            }
        sidecar["extra"] = self.info
        sidecar = json.loads(json.dumps(sidecar, default=str))  # numpy scalars, paths
        write_with(path, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
        write_json(sidecar_path(path), sidecar)
        self.path = path
        return path

    def _stored_modules(self) -> dict[str, torch.nn.Module]:
        modules = {"prior": self.prior, "head": self.head}
        if isinstance(self.autoencoder, TinyAutoencoder):
            modules["autoencoder"] = self.autoencoder
        return {k: m for k, m in modules.items() if m is not None}


def missing_part_message(part: str, where: str) -> str:
    """The error text for a bundle without ``part``, with the remedy."""
    return (
        f"{where} holds no {_PART_NAMES[part]} ({_NEEDED_BY[part]} needs it): leave "
        "--recon-models out and the missing part is trained on first use and added to the "
        "cached models, or pass models from `mindeye-rt train` (which trains every part)"
    )


def _autoencoder_record(autoencoder: Any) -> dict[str, Any]:
    if isinstance(autoencoder, TinyAutoencoder):
        return {"kind": "tiny", "config": asdict(autoencoder.config)}
    if autoencoder.path is None:
        raise ConfigError("a diffusers autoencoder needs its 'path' to be stored in a bundle")
    return {
        "kind": "diffusers",
        "path": str(autoencoder.path),
        "image_size": autoencoder.image_size,
    }


def sidecar_path(path: str | Path) -> Path:
    """``NAME.safetensors.json`` of bundle ``NAME.safetensors``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_bundle_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of a bundle; :class:`WeightsError` when missing, foreign or outdated."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        raise WeightsError(
            f"reconstruction bundle {str(path)!r} (and its {side.name}) does not exist: it is "
            "trained by `mindeye-rt stream` / `mindeye-rt train` on first use"
        )
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{str(side)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{str(side)!r} is not a reconstruction-bundle sidecar")
    if meta.get("version") != BUNDLE_VERSION:
        raise WeightsError(
            f"{str(side)!r} has bundle version {meta.get('version')}, this version reads "
            f"{BUNDLE_VERSION}: delete it and it is retrained"
        )
    return meta


def check_bundle_for(
    path: str | Path, checkpoint: str | Path, *, parts: tuple[str, ...] = ("lowlevel",)
) -> Path:
    """``path`` if it is a reconstruction bundle of ``checkpoint`` holding ``parts``.

    Raises
    ------
    WeightsError
        A missing or foreign bundle, one trained on another checkpoint's backbone, or one
        without a part the session needs (``("lowlevel", "prior")`` for ``full`` mode).
    """
    path = Path(path).expanduser()
    meta = read_bundle_sidecar(path)
    extra = meta.get("extra", {})
    sha = file_sha256(checkpoint)
    if extra.get("checkpoint_sha") != sha:
        raise WeightsError(
            f"reconstruction models {str(path)!r} were trained for checkpoint "
            f"{extra.get('checkpoint')!r} (sha256 {extra.get('checkpoint_sha')}), not for "
            f"{str(checkpoint)!r} (sha256 {sha}): leave --recon-models out to train matching ones"
        )
    for part in parts:
        if part not in meta:
            where = f"reconstruction models {str(path)!r}"
            raise WeightsError(missing_part_message(part, where))
    return path


def load_bundle(path: str | Path, device: str = "cpu") -> ReconBundle:
    """Load a bundle written by :meth:`ReconBundle.save` (weights only, never unpickled).

    Raises
    ------
    WeightsError
        Missing or foreign files, weights that do not fit the recorded configs, or a VAE
        directory that no longer loads.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_bundle_sidecar(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{str(path)!r} is not a readable safetensors file: {err}") from None
    try:
        parts: dict[str, Any] = {"token_shape": tuple(meta["token_shape"])}
        if "lowlevel" in meta:
            parts["head"], parts["autoencoder"] = _build_lowlevel(meta["lowlevel"])
        if "prior" in meta:
            parts["prior"] = _build_prior(meta["prior"])
        bundle = ReconBundle(
            **parts,
            info=meta.get("extra", {}),
            part_info={p: meta[p].get("info", {}) for p in PARTS if p in meta},
        )
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise WeightsError(f"{str(sidecar_path(path))!r} holds an invalid config: {err}") from None
    for name, module in bundle._stored_modules().items():
        sub = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(sub)
        except RuntimeError as err:
            raise WeightsError(
                f"{str(path)!r}: the {name} does not fit its config: {err}"
            ) from None
        module.eval()
    bundle.path = path
    return bundle.to(device)


def _build_lowlevel(record: dict[str, Any]) -> tuple[Any, Any]:
    """An untrained head and autoencoder of a sidecar's ``lowlevel`` record (a VAE is loaded)."""
    head_cfg = dict(record["head_config"])
    head_cfg["latent_shape"] = tuple(head_cfg["latent_shape"])
    head = LowLevelHead(LowLevelConfig(**head_cfg))
    ae = record["autoencoder"]
    if ae["kind"] == "tiny":
        ae_cfg = dict(ae["config"])
        ae_cfg["channels"] = tuple(ae_cfg["channels"])
        return head, TinyAutoencoder(AutoencoderConfig(**ae_cfg))
    return head, load_autoencoder(ae["path"], image_size=ae["image_size"])


def _build_prior(record: dict[str, Any]) -> Any:
    return DiffusionPrior(PriorConfig.from_dict(record["config"]))
