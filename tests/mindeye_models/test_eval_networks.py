"""The reconstruction table's feature networks: real architectures with random weights, saved
as the documented files and loaded back; features read from the papers' layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.eval_networks import NETWORKS, FeatureNetwork, _build_torchvision, weights_file
from rt_base.errors import ConfigError, WeightsError
from tests.eval_weights import write_random_weights


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("eval-weights"))


def images(n=3, size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize(
    "network, shapes",
    [
        ("alexnet", {"AlexNet(2)": 192 * 31 * 31, "AlexNet(5)": 256 * 15 * 15}),
        ("inception_v3", {"InceptionV3": 2048}),
        ("efficientnet_b1", {"EffNet-B": 1280}),
        ("swav", {"SwAV": 2048}),
        ("clip", {"CLIP": 128}),
    ],
)
def test_each_network_loads_its_file_and_gives_the_papers_features(weights_dir, network, shapes):
    net = FeatureNetwork(network, weights_file(network, weights_dir), clip_embedder="tiny-random")
    feats = net.features(images(3))
    assert {k: v.shape for k, v in feats.items()} == {k: (3, n) for k, n in shapes.items()}
    for v in feats.values():
        assert np.isfinite(v).all() and v.std() > 0


def test_alexnet_layers_2_and_5_are_the_relus_after_conv2_and_conv5(weights_dir):
    net = FeatureNetwork("alexnet", weights_dir / "alexnet.pth")
    model = _build_torchvision("alexnet")
    model.load_state_dict(torch.load(weights_dir / "alexnet.pth", weights_only=True))
    imgs = images(2)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", antialias=True)
    mean, std = torch.tensor(NETWORKS["alexnet"].mean), torch.tensor(NETWORKS["alexnet"].std)
    x = (x - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        conv2 = model.features[:5](x).flatten(1).numpy()
        conv5 = model.features[:12](x).flatten(1).numpy()
    feats = net.features(imgs)
    np.testing.assert_allclose(feats["AlexNet(2)"], conv2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["AlexNet(5)"], conv5, rtol=1e-4, atol=1e-5)


def test_clip_feature_is_the_pooled_image_embedding(weights_dir):
    from mindeye_models.embedder import load_embedder

    net = FeatureNetwork("clip", weights_file("clip", weights_dir), clip_embedder="tiny-random")
    emb = load_embedder("tiny-random", weights=weights_file("clip", weights_dir))
    imgs = images(2, size=64)  # the tiny tower's own input size: no resize on either side
    assert net.resize == 64
    tokens = emb.embed(imgs)  # the class token is CLIP's image embedding
    np.testing.assert_allclose(net.features(imgs)["CLIP"], tokens[:, 0], rtol=1e-4, atol=1e-5)


def test_a_wrong_or_missing_file_is_a_weights_error_naming_the_keys(weights_dir, tmp_path):
    with pytest.raises(
        WeightsError, match=r"\d+ missing keys .*AuxLogits.*\d+ unexpected keys .*classifier"
    ):
        FeatureNetwork("inception_v3", weights_dir / "alexnet.pth")
    with pytest.raises(WeightsError, match="is absent"):
        FeatureNetwork("alexnet", tmp_path / "alexnet.pth")
    (tmp_path / "alexnet.pth").write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        FeatureNetwork("alexnet", tmp_path / "alexnet.pth")


def test_weights_files_are_found_by_their_documented_or_distributed_names(tmp_path):
    assert weights_file("alexnet", tmp_path) is None and weights_file("alexnet", None) is None
    (tmp_path / "alexnet-owt-7be5be79.pth").touch()
    assert weights_file("alexnet", tmp_path).name == "alexnet-owt-7be5be79.pth"
    with pytest.raises(ConfigError, match="'network' must be one of"):
        weights_file("vgg", tmp_path)
