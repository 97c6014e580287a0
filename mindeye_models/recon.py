"""Reconstruction models of a trained MindEye, trained on first use and cached, and the
per-trial :class:`Reconstructor` that the reconstruct stage runs.

A *reconstruction bundle* is one safetensors file (with a JSON sidecar) holding what MindEye
needs besides its backbone to draw a trial:

* the diffusion prior (:mod:`mindeye_models.prior`), trained on the frozen backbone's tokens of
  the training trials against the embedder's tokens of their images (MindEye's "after" variant;
  ``mindeye-rt train --prior joint`` trains it with the backbone instead, see
  :func:`mindeye_models.train.train_mindeye`);
* the low-level head (:class:`~mindeye_models.lowlevel.LowLevelHead`), voxels -> autoencoder
  latents;
* the autoencoder itself: a :class:`~mindeye_models.lowlevel.TinyAutoencoder` trained on the
  stimulus images, or a reference to a local diffusers VAE directory (``vae=``).

The bundle's file name carries a key over the checkpoint's bytes, the training data and the
options, so a second session finds it.  Ten percent of the training trials are held out to
report how well each part generalizes (recorded in the sidecar).

Modes (:data:`RECON_MODES`): ``lowlevel`` draws the decoded low-level latents (a blurry image);
``full`` also samples CLIP tokens with the prior and hands their class token (the CLIP image
embedding) to a Stable unCLIP generator, img2img from the blurry image.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindeye_models.recon_options import RECON_MODES, ReconOptions  # noqa: F401 (re-export)
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError, WeightsError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FORMAT = "mindeye-rt-recon-bundle"
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class ReconTrainConfig:
    """How a reconstruction bundle is trained.

    Parameters
    ----------
    prior_preset : prior size (:data:`mindeye_models.prior.PRIOR_PRESETS`); None picks the one
        matching the embedder's tokens (``paper`` for 257 x 768, ``small`` for 17 x 128).
    prior_epochs, prior_batch, prior_lr : the prior's recipe (AdamW, cosine decay).
    ae_steps : optimizer steps (batches of 32) of the tiny autoencoder on the stimulus images
        (ignored with a VAE); a fixed budget, whatever the number of images.
    head_epochs, head_hidden : the low-level head's recipe and width.
    val_fraction : share of training trials held out for the figures in the sidecar.
    seed : seeds every part.
    """

    prior_preset: str | None = None
    prior_epochs: int = 15
    prior_batch: int = 64
    prior_lr: float = 1e-3
    ae_steps: int = 600
    head_epochs: int = 30
    head_hidden: int = 512
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("prior_epochs", "prior_batch", "ae_steps", "head_epochs", "head_hidden"):
            check_number(getattr(self, key), key, minimum=1, integer=True)
        check_number(self.prior_lr, "prior_lr", minimum=0, strict_min=True)
        check_number(self.val_fraction, "val_fraction", minimum=0, maximum=0.5)
        check_number(self.seed, "seed", minimum=0, integer=True)
        if self.prior_preset is not None:
            from mindeye_models.prior import PRIOR_PRESETS

            check_choice(self.prior_preset, "prior_preset", list(PRIOR_PRESETS))


def prior_preset_for(token_shape: tuple[int, int]) -> str:
    """The prior preset whose token shape is ``token_shape``.

    Raises
    ------
    ConfigError
        When no preset has that shape.
    """
    from mindeye_models.prior import PRIOR_PRESETS

    for name in ("paper", "small"):
        if PRIOR_PRESETS[name].token_shape == tuple(token_shape):
            return name
    raise ConfigError(
        f"no prior preset for {token_shape[0]} x {token_shape[1]} tokens: pass prior_preset "
        "with a PriorConfig of that shape"
    )


def file_sha(path: str | Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class ReconBundle:
    """Prior, low-level head and autoencoder of one MindEye checkpoint.

    Attributes
    ----------
    prior : DiffusionPrior
    head : LowLevelHead
    autoencoder : TinyAutoencoder or DiffusersAutoencoder (``encode_images``/``decode_latents``)
    info : the sidecar's ``extra`` dict (training figures, the checkpoint it belongs to)
    """

    def __init__(self, prior, head, autoencoder, info: dict[str, Any] | None = None) -> None:
        self.prior = prior
        self.head = head
        self.autoencoder = autoencoder
        self.info = dict(info or {})

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.prior.config.token_shape

    def to(self, device: str | torch.device) -> ReconBundle:
        self.prior.to(device)
        self.head.to(device)
        if isinstance(self.autoencoder, torch.nn.Module):
            self.autoencoder.to(device)
        return self

    @torch.no_grad()
    def blurry(self, voxels: torch.Tensor) -> np.ndarray:
        """(B, V) voxels -> (B, S, S, 3) uint8 low-level reconstructions."""
        return self.autoencoder.decode_latents(self.head(voxels))

    def save(self, path: str | Path, extra: dict[str, Any]) -> Path:
        """Write weights (``path``, safetensors) and sidecar (``path`` + ``.json``) atomically."""
        from safetensors.torch import save_file

        from mindeye_models.lowlevel import TinyAutoencoder

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = {"prior": self.prior, "head": self.head}
        if isinstance(self.autoencoder, TinyAutoencoder):
            parts["autoencoder"] = self.autoencoder
            ae = {"kind": "tiny", "config": asdict(self.autoencoder.config)}
        else:
            ae = {
                "kind": "diffusers",
                "path": str(self.autoencoder.path),
                "image_size": self.autoencoder.image_size,
            }
        state = {
            f"{name}.{k}": v.detach().cpu().contiguous()
            for name, module in parts.items()
            for k, v in module.state_dict().items()
        }
        sidecar = {
            "format": FORMAT,
            "version": BUNDLE_VERSION,
            "prior_config": self.prior.config.to_dict(),
            "head_config": asdict(self.head.config),
            "autoencoder": ae,
            "extra": extra,
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp), metadata={"format": FORMAT})
        tmp.replace(path)
        side = _sidecar(path)
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(json.dumps(sidecar, indent=2, default=str))
        tmp.replace(side)
        self.info = dict(extra)
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_bundle_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of a bundle; :class:`WeightsError` when missing or foreign."""
    path = Path(path)
    side = _sidecar(path)
    if not path.is_file() or not side.is_file():
        raise WeightsError(
            f"reconstruction bundle {str(path)!r} (and its {side.name}) does not exist: it is "
            "trained by `mindeye-rt stream` / `mindeye-rt train` on first use"
        )
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{str(side)!r} is not valid JSON: {err}") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{str(side)!r} is not a reconstruction-bundle sidecar")
    if meta.get("version") != BUNDLE_VERSION:
        raise WeightsError(
            f"{str(side)!r} has bundle version {meta.get('version')}, this version reads "
            f"{BUNDLE_VERSION}: delete it and it is retrained"
        )
    return meta


def check_bundle_for(path: str | Path, checkpoint: str | Path) -> Path:
    """``path`` if it is a reconstruction bundle trained for ``checkpoint``.

    Raises
    ------
    WeightsError
        A missing or foreign bundle, or one trained on another checkpoint's backbone.
    """
    path = Path(path).expanduser()
    extra = read_bundle_sidecar(path).get("extra", {})
    sha = file_sha(checkpoint)
    if extra.get("checkpoint_sha") != sha:
        raise WeightsError(
            f"reconstruction models {str(path)!r} were trained for checkpoint "
            f"{extra.get('checkpoint')!r} (sha {extra.get('checkpoint_sha')}), not for "
            f"{str(checkpoint)!r} (sha {sha}): leave --recon-models out to train matching ones"
        )
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

    from mindeye_models.lowlevel import (
        AutoencoderConfig,
        LowLevelConfig,
        LowLevelHead,
        TinyAutoencoder,
        load_autoencoder,
    )
    from mindeye_models.prior import DiffusionPrior, PriorConfig

    path = Path(path)
    meta = read_bundle_sidecar(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{str(path)!r} is not a readable safetensors file: {err}") from None
    try:
        prior = DiffusionPrior(PriorConfig.from_dict(meta["prior_config"]))
        head_cfg = dict(meta["head_config"])
        head_cfg["latent_shape"] = tuple(head_cfg["latent_shape"])
        head = LowLevelHead(LowLevelConfig(**head_cfg))
        ae_meta = meta["autoencoder"]
        if ae_meta["kind"] == "tiny":
            ae_cfg = dict(ae_meta["config"])
            ae_cfg["channels"] = tuple(ae_cfg["channels"])
            autoencoder = TinyAutoencoder(AutoencoderConfig(**ae_cfg))
            modules = {"prior": prior, "head": head, "autoencoder": autoencoder}
        else:
            autoencoder = load_autoencoder(ae_meta["path"], image_size=ae_meta["image_size"])
            autoencoder.path = Path(ae_meta["path"])
            modules = {"prior": prior, "head": head}
    except (KeyError, TypeError, ConfigError) as err:
        raise WeightsError(f"{str(_sidecar(path))!r} holds an invalid config: {err}") from None
    for name, module in modules.items():
        sub = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(sub)
        except RuntimeError as err:
            raise WeightsError(
                f"{str(path)!r}: the {name} does not fit its config: {err}"
            ) from None
        module.eval()
    return ReconBundle(prior, head, autoencoder, meta.get("extra", {})).to(device)


# -- training ------------------------------------------------------------------------------------


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n >= 10 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def backbone_tokens(model, voxels: np.ndarray, batch: int = 256) -> torch.Tensor:
    """(N, V) responses -> (N, T, D) float32 backbone tokens of a MindEye model (eval mode)."""
    model.eval()
    out = []
    dev = next(model.parameters()).device
    for i in range(0, len(voxels), batch):
        x = torch.from_numpy(np.asarray(voxels[i : i + batch], np.float32)).to(dev)
        out.append(model(x)[0].float().cpu())
    return torch.cat(out)


def train_prior(
    prior,
    cond: torch.Tensor,
    target: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fit a :class:`~mindeye_models.prior.DiffusionPrior` on fixed condition tokens.

    Sets the prior's ``data_scale`` from ``target`` first.  AdamW with cosine decay.

    Returns
    -------
    Per-epoch mean loss; the prior is left in eval mode.
    """
    from tqdm.auto import tqdm

    epochs = check_number(epochs, "epochs", minimum=1, integer=True)
    prior.fit_scale(target)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * -(-len(cond) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history = []
    prior.train()
    for _ in tqdm(range(epochs), desc="train prior", unit="epoch", disable=not progress):
        order = torch.randperm(len(cond), generator=g)
        total = 0.0
        for i in range(0, len(cond), batch_size):
            idx = order[i : i + batch_size]
            loss = prior.loss(cond[idx], target[idx], generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(total / len(cond))
    prior.eval()
    return history


def _class_cosine(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cosine similarity of the class tokens (the CLIP image embeddings)."""
    return float(F.cosine_similarity(pred[:, 0].float(), target[:, 0].float(), dim=-1).mean())


def _pixcorr(recons: np.ndarray, images: np.ndarray) -> dict[str, float]:
    from mindeye_models.metrics import shuffled_baseline

    size = int(recons.shape[1])
    res = shuffled_baseline("PixCorr", recons, images, size=size, n_shuffles=5)
    return {"pixcorr": round(res["matched"], 4), "pixcorr_shuffled": round(res["mean"], 4)}


def _bundle_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_recon_models(
    dataset: Any,
    checkpoint: str | Path,
    *,
    models_dir: str | Path,
    config: ReconTrainConfig | None = None,
    vae: str | Path | None = None,
    clip_weights: str | None = None,
    cache_dir: str | Path | None = None,
    prior=None,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Path of the reconstruction bundle of ``checkpoint``; trains and saves it if needed.

    Parameters
    ----------
    dataset : a :class:`replay_data.dataset.ReplayDataset` with training responses.
    checkpoint : the MindEye checkpoint (``.safetensors``) whose backbone feeds the prior.
    models_dir : folder of cached models.
    config : training options (:class:`ReconTrainConfig`).
    vae : a local diffusers AutoencoderKL directory; None trains a tiny autoencoder on the
        stimulus images.
    clip_weights : local CLIP weights of the checkpoint's embedder (ViT-L/14).
    cache_dir : folder of cached image banks.
    prior : an already trained DiffusionPrior (``train --prior joint``); None trains one on the
        frozen backbone.
    force : retrain even if a matching bundle exists.
    progress, log : progress bars and one-line status messages.
    """
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import load_checkpoint
    from mindeye_models.demo import data_fingerprint
    from mindeye_models.embedder import load_embedder
    from mindeye_models.lowlevel import (
        LowLevelConfig,
        LowLevelHead,
        load_autoencoder,
        train_autoencoder,
        train_lowlevel_head,
    )
    from mindeye_models.prior import DiffusionPrior, get_prior_preset

    log = log or (lambda _msg: None)
    config = config or ReconTrainConfig()
    checkpoint = Path(checkpoint)
    ckpt_sha = file_sha(checkpoint)
    responses, image_ids = dataset.training_responses()
    image_ids = np.asarray(image_ids, np.int64)
    if len(responses) < 10:
        raise ConfigError(
            f"dataset {dataset.meta.name!r} has {len(responses)} training trials; the "
            "reconstruction models need at least 10"
        )
    fingerprint = data_fingerprint(responses, image_ids, "recon")
    expect = {
        "checkpoint_sha": ckpt_sha,
        "data_fingerprint": fingerprint,
        "train_config": asdict(config),
        "vae": str(Path(vae).resolve()) if vae else None,
    }
    key = _bundle_key(expect, BUNDLE_VERSION)
    path = Path(models_dir) / f"{checkpoint.stem}-recon-{key}.safetensors"
    if not force and prior is None:
        try:
            extra = read_bundle_sidecar(path).get("extra", {})
        except WeightsError:
            extra = {}
        if all(extra.get(k) == v for k, v in expect.items()):
            log(f"using the cached reconstruction models {path}")
            return path

    start = time.perf_counter()
    model, ckpt_extra = load_checkpoint(checkpoint)
    token_shape = (model.config.n_tokens, model.config.clip_dim)
    if model.config.n_voxels != responses.shape[1]:
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} takes {model.config.n_voxels} voxels but dataset "
            f"{dataset.meta.name!r} has {responses.shape[1]}: use a checkpoint of this subject"
        )
    train_idx, val_idx = _split(len(responses), config.val_fraction, config.seed)
    stimuli = dataset.stimuli()
    log(
        f"training reconstruction models for {checkpoint.name} on {len(train_idx)} trials "
        f"({len(val_idx)} held out)"
    )

    # 1. the diffusion prior on the frozen backbone
    embedder = load_embedder(ckpt_extra.get("embedder", "tiny-random"), weights=clip_weights)
    uniq = np.unique(image_ids)
    bank = ImageBank.build(np.asarray(stimuli[uniq]), uniq, embedder, cache_dir=cache_dir)
    targets = torch.from_numpy(bank.lookup(image_ids))
    cond = backbone_tokens(model, responses)
    info: dict[str, Any] = {}
    if prior is None:
        preset = config.prior_preset or prior_preset_for(token_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            prior = DiffusionPrior(get_prior_preset(preset))
        hist = train_prior(
            prior,
            cond[train_idx],
            targets[train_idx],
            epochs=config.prior_epochs,
            batch_size=config.prior_batch,
            lr=config.prior_lr,
            seed=config.seed,
            progress=progress,
        )
        info.update(prior_training="after", prior_final_loss=round(hist[-1], 5))
    else:
        info.update(prior_training="joint")
    prior = prior.cpu().eval()
    if len(val_idx):
        g = torch.Generator().manual_seed(config.seed)
        sampled = prior.sample(cond[val_idx], steps=10, generator=g)
        info["val_class_cosine_prior"] = round(_class_cosine(sampled, targets[val_idx]), 4)
        info["val_class_cosine_backbone"] = round(_class_cosine(cond[val_idx], targets[val_idx]), 4)

    # 2. the autoencoder and the low-level head
    if vae:
        autoencoder = load_autoencoder(vae)
        autoencoder.path = Path(vae).resolve()
        info["autoencoder"] = f"diffusers VAE {autoencoder.path}"
    else:
        ae_epochs = -(-config.ae_steps // -(-len(uniq) // 32))
        autoencoder, ae_hist = train_autoencoder(
            np.asarray(stimuli[uniq]), epochs=ae_epochs, batch_size=32, seed=config.seed
        )
        info.update(autoencoder="tiny", autoencoder_final_loss=round(ae_hist[-1], 5))
    latents_by_id = {}
    for i in range(0, len(uniq), 64):
        z = autoencoder.encode_images(np.asarray(stimuli[uniq[i : i + 64]])).float().cpu()
        latents_by_id.update(zip(uniq[i : i + 64].tolist(), z, strict=True))
    latents = torch.stack([latents_by_id[int(i)] for i in image_ids])
    head = LowLevelHead(
        LowLevelConfig(
            n_voxels=responses.shape[1],
            latent_shape=tuple(latents.shape[1:]),
            hidden=config.head_hidden,
        )
    )
    voxels = torch.from_numpy(np.asarray(responses, np.float32))
    train_lowlevel_head(
        head, voxels[train_idx], latents[train_idx], epochs=config.head_epochs, seed=config.seed
    )
    bundle = ReconBundle(prior, head, autoencoder)
    if len(val_idx) >= 2:
        recons = bundle.blurry(voxels[val_idx])
        seen = autoencoder.decode_latents(latents[val_idx])  # the autoencoder's own ceiling
        truth = np.asarray(stimuli[image_ids[val_idx]])  # the metric resizes to the recons' size
        info["val_blurry"] = _pixcorr(recons, truth)
        info["val_autoencoder_pixcorr"] = _pixcorr(seen, truth)["pixcorr"]
    seconds = time.perf_counter() - start
    extra = {
        **expect,
        **info,
        "checkpoint": str(checkpoint),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "train_seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    bundle.save(path, extra)
    blurry = info.get("val_blurry", {})
    log(
        f"reconstruction models trained in {seconds:.0f} s; held-out blurry PixCorr "
        f"{blurry.get('pixcorr', float('nan')):.3f} (shuffled "
        f"{blurry.get('pixcorr_shuffled', float('nan')):.3f}); saved {path}"
    )
    return path


# -- run time ------------------------------------------------------------------------------------


def load_generator(generator: str, *, embed_dim: int, device: str, dtype: str, seed: int = 0):
    """The image generator of ``full`` mode.

    Parameters
    ----------
    generator : a local Stable unCLIP snapshot directory, or ``"tiny-random"`` for a tiny
        pipeline with random weights (exercises the path; its images carry no content).
    embed_dim : width of the CLIP image embeddings the prior produces (the class token).

    Raises
    ------
    WeightsError
        Missing or incompatible snapshot, or one conditioned on another embedding width.
    """
    from mindeye_models.generator import (
        build_tiny_unclip_pipeline,
        load_unclip_pipeline,
    )
    from mindeye_models.generator import (
        embed_dim as pipe_embed_dim,
    )

    if generator == "tiny-random":
        pipe = build_tiny_unclip_pipeline(seed=seed, embed_dim=embed_dim).to(device)
        if dtype != "float32":
            pipe = pipe.to(dtype=DTYPES[dtype])
    else:
        pipe = load_unclip_pipeline(generator, device=device, dtype=DTYPES[dtype])
    if pipe_embed_dim(pipe) != embed_dim:
        raise WeightsError(
            f"generator {generator!r} takes {pipe_embed_dim(pipe)}-d image embeddings but the "
            f"prior produces {embed_dim}-d ones: use a Stable unCLIP snapshot conditioned on the "
            "checkpoint's CLIP (ViT-L/14: stable-diffusion-2-1-unclip-small)"
        )
    return pipe


class Reconstructor:
    """Reconstructs one trial at a time: blurry image, and in ``full`` mode a generated one.

    Parameters
    ----------
    bundle : the checkpoint's :class:`ReconBundle`.
    options : :class:`ReconOptions`.
    pipe : the generator pipeline (``full`` mode; see :func:`load_generator`).
    """

    def __init__(self, bundle: ReconBundle, options: ReconOptions, pipe=None) -> None:
        if options.mode == "full" and pipe is None:
            raise ConfigError(
                "recon mode 'full' needs a generator: --generator DIR (a Stable unCLIP snapshot) "
                "or --generator tiny-random (random weights, images carry no content)"
            )
        self.options = options
        self.bundle = bundle.to(options.device)
        # the prior and the head stay in float32 (small); the generator runs in options.dtype
        self.pipe = pipe if options.mode == "full" else None

    @torch.no_grad()
    def __call__(self, tokens: np.ndarray, response: np.ndarray, number: int) -> dict[str, Any]:
        """Reconstruct trial ``number`` from its backbone ``tokens`` (T, D) and ``response`` (V,).

        Returns
        -------
        dict with ``image`` (S, S, 3) uint8 (the blurry image in ``lowlevel`` mode), ``blurry``
        (``full`` mode only) and ``ms``: milliseconds per part.
        """
        from mindeye_models.generator import reconstruct

        opt = self.options
        dev = torch.device(opt.device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        x = torch.from_numpy(np.asarray(response, np.float32)).reshape(1, -1).to(dev)
        blurry = self.bundle.blurry(x)[0]
        sync()
        t1 = time.perf_counter()
        ms = {"lowlevel": 1e3 * (t1 - t0)}
        if self.pipe is None:
            return {"image": blurry, "ms": ms}
        seed = opt.seed + int(number)
        prior = self.bundle.prior
        cond = torch.from_numpy(np.asarray(tokens, np.float32))[None].to(dev)
        g = torch.Generator().manual_seed(seed)
        clip = prior.sample(cond, steps=opt.prior_steps, guidance=opt.prior_guidance, generator=g)
        sync()
        t2 = time.perf_counter()
        image = reconstruct(
            self.pipe, clip[:, 0], blurry, steps=opt.steps, strength=opt.strength, seed=seed
        )[0]
        sync()
        ms.update(prior=1e3 * (t2 - t1), generator=1e3 * (time.perf_counter() - t2))
        return {"image": image, "blurry": blurry, "ms": ms}
