"""ImageBank retrieval and its embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.embedder import load_embedder
from rt_base.errors import ConfigError, WeightsError


class CountingEmbedder:
    """Deterministic stand-in for ImageEmbedder that counts its calls."""

    identity = "fake0123"
    token_shape = (3, 4)

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        x = images.reshape(len(images), -1)[:, :12].astype(np.float32)
        return (x - 100.0).reshape(len(images), 3, 4)


@pytest.fixture
def bank():
    g = torch.Generator().manual_seed(0)
    ids = 100 + 3 * np.arange(10)  # ids are not row numbers
    return ImageBank(ids, torch.randn(10, 5, 6, generator=g))


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_retrieve_finds_the_matching_images(bank):
    pred = bank.tokens[[3, 7]] + 0.05 * torch.randn(2, 5, 6)
    ids, scores = bank.retrieve(pred, k=4)
    assert ids.shape == scores.shape == (2, 4)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids[:, 0].tolist() == [109, 121]
    assert (np.diff(scores, axis=1) <= 0).all()
    assert scores[:, 0] == pytest.approx([1.0, 1.0], abs=0.01)
    ids_np, _ = bank.retrieve(pred.numpy(), k=1)  # numpy input too
    assert ids_np[:, 0].tolist() == [109, 121]


def test_retrieve_scores_are_cosine_similarities_of_flat_tokens(bank):
    pred = torch.randn(3, 5, 6)
    ids, scores = bank.retrieve(pred, k=10)
    flat = torch.nn.functional.normalize(pred.reshape(3, -1), dim=1)
    ref = torch.nn.functional.normalize(bank.tokens.reshape(10, -1), dim=1)
    expect = (flat @ ref.T).numpy()
    rows = bank.positions(ids[0])
    np.testing.assert_allclose(scores[0], expect[0, rows], rtol=1e-5, atol=1e-6)


def test_retrieve_subset_limits_the_candidates(bank):
    pred = bank.tokens[[3]]
    subset = np.array([100, 103, 115, 118])  # the true image (109) is left out
    ids, _ = bank.retrieve(pred, k=4, subset=subset)
    assert sorted(ids[0].tolist()) == sorted(subset.tolist())
    with pytest.raises(ConfigError, match="'k'"):
        bank.retrieve(pred, k=5, subset=subset)


def test_bad_inputs_raise_config_errors(bank):
    with pytest.raises(ConfigError, match="'k'"):
        bank.retrieve(torch.randn(1, 5, 6), k=11)
    with pytest.raises(ConfigError, match="'pred'"):
        bank.retrieve(torch.randn(1, 4, 6))
    with pytest.raises(ConfigError, match="not in the bank"):
        bank.lookup(np.array([100, 101]))
    with pytest.raises(ConfigError, match="unique"):
        ImageBank(np.array([1, 1]), np.zeros((2, 3, 4)))
    with pytest.raises(ConfigError, match="'tokens'"):
        ImageBank(np.array([1, 2]), np.zeros((3, 3, 4)))


def test_lookup_returns_tokens_by_id(bank):
    out = bank.lookup(np.array([121, 100, 121]))
    assert out.shape == (3, 5, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], bank.tokens[7].numpy())
    np.testing.assert_array_equal(out[1], bank.tokens[0].numpy())


def test_save_load_round_trip(bank, tmp_path):
    bank.save(tmp_path / "b.safetensors")
    again = ImageBank.load(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(again.ids, bank.ids)
    assert torch.equal(again.tokens, bank.tokens)
    with pytest.raises(WeightsError, match="does not exist"):
        ImageBank.load(tmp_path / "missing.safetensors")


def test_build_caches_embeddings_and_a_hit_does_not_recompute(tmp_path):
    imgs, ids = images(5), np.array([4, 8, 15, 16, 23])
    emb = CountingEmbedder()
    first = ImageBank.build(imgs, ids, emb, cache_dir=tmp_path)
    assert emb.calls == 1
    assert len(list(tmp_path.glob("bank-fake0123-*.safetensors"))) == 1
    second = ImageBank.build(imgs, ids, emb, cache_dir=tmp_path)
    assert emb.calls == 1  # cache hit
    assert torch.equal(first.tokens, second.tokens)
    np.testing.assert_array_equal(second.ids, ids)
    ImageBank.build(images(5, seed=1), ids, emb, cache_dir=tmp_path)  # other pixels
    assert emb.calls == 2
    other = CountingEmbedder()
    other.identity = "other999"  # other weights -> other cache entry
    ImageBank.build(imgs, ids, other, cache_dir=tmp_path)
    assert other.calls == 1
    ImageBank.build(imgs, ids, emb, cache_dir=None)  # no cache
    assert emb.calls == 3


def test_build_with_the_tiny_random_embedder(tmp_path):
    emb = load_embedder("tiny-random")
    imgs = images(3)
    bank = ImageBank.build(imgs, np.arange(3), emb, cache_dir=tmp_path)
    assert bank.token_shape == emb.token_shape == (17, 128)
    np.testing.assert_allclose(bank.lookup(np.array([1]))[0], emb.embed(imgs[1:2])[0], atol=1e-5)
    ids, _ = bank.retrieve(torch.from_numpy(emb.embed(imgs)), k=1)
    assert ids[:, 0].tolist() == [0, 1, 2]


def test_search_on_keeps_the_answer_and_refuses_a_bad_device(bank):
    pred = torch.randn(2, 5, 6)
    before = bank.retrieve(pred, k=10)
    assert bank.search_on("cpu") is bank and bank.search_device == torch.device("cpu")
    after = bank.retrieve(pred, k=10)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    with pytest.raises(ConfigError, match="'device'.*'gpu0'"):
        bank.search_on("gpu0")
    assert bank.search_device == torch.device("cpu")  # a refused device changes nothing


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_bank_searching_on_a_gpu_gives_the_cpu_answer(bank):
    pred = torch.randn(3, 5, 6)
    subset = np.array([100, 103, 109, 115, 118])
    on_cpu = bank.retrieve(pred, k=10), bank.retrieve(pred, k=3, subset=subset)
    bank.search_on("cuda")
    assert bank.search_device.type == "cuda"
    for pred_on in (pred, pred.cuda()):  # a prediction on either side
        on_gpu = bank.retrieve(pred_on, k=10), bank.retrieve(pred_on, k=3, subset=subset)
        for (ids_g, scores_g), (ids_c, scores_c) in zip(on_gpu, on_cpu, strict=True):
            np.testing.assert_array_equal(ids_g, ids_c)
            np.testing.assert_allclose(scores_g, scores_c, atol=1e-5)
    np.testing.assert_array_equal(bank.lookup([103]), bank.tokens[[1]].numpy())  # host tokens
