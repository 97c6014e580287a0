"""The feature networks of the papers' reconstruction table, built with random initialisation
and loaded from local weights files (nothing is ever downloaded).

MindEye's ``Reconstruction_Metrics`` (following Ozcelik & VanRullen) reads features from:

* AlexNet: ``features.4`` (layer 2) and ``features.11`` (layer 5); input 256 px, ImageNet
  normalisation;
* InceptionV3: ``avgpool``; 342 px, ImageNet;
* CLIP ViT-L/14: the image embedding (``encode_image``); 224 px, CLIP normalisation;
* EfficientNet-B1: ``avgpool``; 255 px, ImageNet;
* SwAV (a ResNet-50): ``avgpool``; 224 px, ImageNet.

Each image (float in [0, 1]) has its shorter side resized (bilinear, antialiased) to the size
above, with no crop, then is normalised.  :data:`NETWORKS` lists the weights file names looked
for in the ``--eval-weights`` folder; the first is the documented name, the others are the
names the weights are distributed under.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rt_base.errors import ConfigError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class NetworkSpec:
    """One feature network: how to build it, where its weights are, how to feed it.

    ``nodes`` maps a feature name to the graph node it is read from (``None``: the network's
    output); ``ignore_keys`` are key prefixes of the distributed file that the network does
    not have (SwAV's projection head) or that the file lacks (SwAV's untrained ``fc``).
    """

    name: str
    files: tuple[str, ...]
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    nodes: dict[str, str | None]
    ignore_keys: tuple[str, ...] = ()
    strip_prefix: str = ""


NETWORKS: dict[str, NetworkSpec] = {
    "alexnet": NetworkSpec(
        "AlexNet (torchvision, IMAGENET1K_V1)",
        ("alexnet.pth", "alexnet-owt-7be5be79.pth"),
        256,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"AlexNet(2)": "features.4", "AlexNet(5)": "features.11"},
    ),
    "inception_v3": NetworkSpec(
        "InceptionV3 (torchvision, IMAGENET1K_V1)",
        ("inception_v3.pth", "inception_v3_google-0cc3c7bd.pth"),
        342,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"InceptionV3": "avgpool"},
    ),
    "clip": NetworkSpec(
        "CLIP ViT-L/14 (OpenAI weights in open_clip's layout)",
        (
            "clip_vit_l14.safetensors",
            "clip_vit_l14.bin",
            "open_clip_model.safetensors",
            "open_clip_pytorch_model.bin",
        ),
        224,
        CLIP_MEAN,
        CLIP_STD,
        {"CLIP": None},
    ),
    "efficientnet_b1": NetworkSpec(
        "EfficientNet-B1 (torchvision, IMAGENET1K_V2)",
        ("efficientnet_b1.pth", "efficientnet_b1-c27df63c.pth"),
        255,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"EffNet-B": "avgpool"},
    ),
    "swav": NetworkSpec(
        "SwAV ResNet-50 (facebookresearch/swav, 800 epochs)",
        ("swav_resnet50.pth", "swav_800ep_pretrain.pth.tar"),
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"SwAV": "avgpool"},
        ignore_keys=("fc.", "projection_head.", "prototypes."),
        strip_prefix="module.",
    ),
}


def weights_file(network: str, weights_dir: str | Path | None) -> Path | None:
    """The first of ``network``'s file names present in ``weights_dir``; None if none is."""
    if network not in NETWORKS:
        raise ConfigError(f"'network' must be one of {sorted(NETWORKS)}, got {network!r}")
    if weights_dir is None:
        return None
    for name in NETWORKS[network].files:
        path = Path(weights_dir) / name
        if path.is_file():
            return path
    return None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (tensors only)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: say which
        raise WeightsError(f"{str(path)!r} is not a readable state dict: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


def _build_torchvision(network: str) -> torch.nn.Module:
    from torchvision import models

    if network == "alexnet":
        return models.alexnet(weights=None)
    if network == "inception_v3":
        # the layout of the pretrained weights: auxiliary head present, inputs re-scaled
        # from ImageNet normalisation to the [-1, 1] the Google weights expect
        return models.inception_v3(
            weights=None, aux_logits=True, transform_input=True, init_weights=False
        )
    if network == "efficientnet_b1":
        return models.efficientnet_b1(weights=None)
    if network == "swav":
        return models.resnet50(weights=None)
    raise ConfigError(f"{network!r} is not a torchvision network")


def _load_into(model: torch.nn.Module, state: dict, spec: NetworkSpec, path: Path) -> None:
    if spec.strip_prefix:
        state = {k.removeprefix(spec.strip_prefix): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(spec.ignore_keys)}
    wanted = {k for k in model.state_dict() if not k.startswith(spec.ignore_keys)}
    missing, unexpected = sorted(wanted - set(state)), sorted(set(state) - wanted)
    if missing or unexpected:
        raise WeightsError(
            f"{str(path)!r} does not fit {spec.name}: {len(missing)} missing keys "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, {len(unexpected)} unexpected "
            f"keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; "
            f"expected its state dict as distributed"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes
        raise WeightsError(f"{str(path)!r} does not fit {spec.name}: {err}") from err


class FeatureNetwork:
    """A loaded feature network: ``features(images) -> {feature name: (N, F) float32}``.

    Parameters
    ----------
    network : a key of :data:`NETWORKS`.
    path : its weights file.
    device : torch device.
    clip_embedder : (``clip`` only) the open_clip geometry, a name of
        :data:`mindeye_models.embedder.EMBEDDERS`; ``ViT-L-14`` is the papers' (tests use a
        smaller one).
    """

    def __init__(
        self,
        network: str,
        path: str | Path,
        *,
        device: str = "cpu",
        clip_embedder: str = "ViT-L-14",
    ) -> None:
        if network not in NETWORKS:
            raise ConfigError(f"'network' must be one of {sorted(NETWORKS)}, got {network!r}")
        self.network, self.spec, self.path = network, NETWORKS[network], Path(path)
        self.device = torch.device(device)
        #: the input side; a ViT takes exactly its own square size (224 for ViT-L/14)
        self.resize = self.spec.resize
        self._square = network == "clip"
        if not self.path.is_file():
            raise WeightsError(f"weights file {str(self.path)!r} of {self.spec.name} is absent")
        self._forward = self._build(clip_embedder)

    def _build(self, clip_embedder: str) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        if self.network == "clip":
            from mindeye_models.embedder import load_embedder

            # the embedder's loader reads the open_clip layout; its visual tower's forward
            # is CLIP's image embedding (class token, post-layernorm, projection)
            visual = load_embedder(clip_embedder, weights=self.path, device=str(self.device))
            self.resize = visual.config.image_size
            module = visual.visual.eval()
            (name,) = self.spec.nodes
            return lambda x: {name: module(x)}
        from torchvision.models.feature_extraction import create_feature_extractor

        model = _build_torchvision(self.network)
        _load_into(model, _read_state(self.path), self.spec, self.path)
        nodes = {node: name for name, node in self.spec.nodes.items()}
        with warnings.catch_warnings():  # eval-mode nodes are what is asked for
            warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
            extractor = create_feature_extractor(model.eval(), return_nodes=nodes)
        extractor.eval().requires_grad_(False).to(self.device)
        return extractor

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 (or float in [0, 1]) -> the network's normalised input."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        x = torch.as_tensor(np.asarray(images))
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ConfigError(f"images must be (N, H, W, 3), got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        size = [self.resize, self.resize] if self._square else [self.resize]
        x = TF.resize(x, size, InterpolationMode.BILINEAR, antialias=True)
        return TF.normalize(x, list(self.spec.mean), list(self.spec.std)).to(self.device)

    @torch.no_grad()
    def features(
        self, images: np.ndarray | torch.Tensor, batch_size: int = 16
    ) -> dict[str, np.ndarray]:
        """Each feature of ``images`` flattened to rows: ``{name: (N, F) float32}``."""
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.spec.nodes}
        for i in range(0, len(images), batch_size):
            feats = self._forward(self.preprocess(images[i : i + batch_size]))
            for name in out:
                out[name].append(feats[name].float().flatten(1).cpu().numpy())
        return {name: np.concatenate(rows) for name, rows in out.items()}
