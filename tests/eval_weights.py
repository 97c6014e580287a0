"""Random weights of the reconstruction table's feature networks, written as the files
``mindeye-rt eval --eval-weights DIR`` looks for (the real architectures; CLIP is a small
open_clip tower, to be loaded with ``clip_embedder="tiny-random"``)."""

from __future__ import annotations

from pathlib import Path

import torch

from mindeye_models.eval_networks import NETWORKS, _build_torchvision

TORCHVISION = ("alexnet", "inception_v3", "efficientnet_b1", "swav")


def _calibrate_batch_norm(model: torch.nn.Module) -> None:
    """Batch-norm statistics from noise images: with the initial ones (mean 0, variance 1)
    some random networks' activations shrink to nothing (EfficientNet's reach 1e-14)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average of the batches seen
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 299, 299))
    model.eval()


def random_state(network: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of ``network``'s architecture with random weights, in the layout its
    weights are distributed in (SwAV: ``module.`` prefix, projection head, no ``fc``)."""
    torch.manual_seed(seed)
    model = _build_torchvision(network)
    _calibrate_batch_norm(model)
    state = model.state_dict()
    if network == "swav":
        state = {f"module.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        state["module.projection_head.0.weight"] = torch.randn(2048, 2048)
        state["module.prototypes.weight"] = torch.randn(3000, 128)
    return state


def save_random_clip(path, seed: int = 0) -> None:
    """A small open_clip vision tower's random weights in the open_clip layout."""
    from safetensors.torch import save_file

    from mindeye_models.embedder import load_embedder

    torch.manual_seed(seed)
    visual = load_embedder("tiny-random").visual
    for p in visual.parameters():  # not the embedder's fixed seed: a file's own weights
        torch.nn.init.normal_(p, std=0.05)
    save_file({f"visual.{k}": v.contiguous() for k, v in visual.state_dict().items()}, str(path))


def write_random_weights(root: Path, networks=(*TORCHVISION, "clip")) -> Path:
    """Every network's random weights under its documented file name in ``root``."""
    for network in networks:
        path = root / NETWORKS[network].files[0]
        if network == "clip":
            save_random_clip(path)
        else:
            torch.save(random_state(network), path)
    return root
