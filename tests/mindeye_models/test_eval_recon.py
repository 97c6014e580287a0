"""The papers' reconstruction table: every metric on random-weight networks, chance levels,
metrics whose weights are absent listed as not computed."""

from __future__ import annotations

import numpy as np
import pytest

from mindeye_models import metrics
from mindeye_models.eval_recon import (
    RECON_METRICS,
    correlation_distance,
    other_images,
    reconstruction_table,
)
from rt_base.errors import ConfigError
from tests.eval_weights import write_random_weights


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("eval-weights"))


def seen_images(n=6, size=32, seed=0):
    """Smooth random images (blocks), so that resizing keeps them apart."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return blocks.repeat(size // 4, axis=1).repeat(size // 4, axis=2)


def test_identification_with_one_reconstruction_per_image_is_the_papers_definition():
    """The papers' loop (np.corrcoef, ``r < congruents``, summed over the real images)."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((9, 20))
    pred = real + 2.0 * rng.standard_normal((9, 20))
    r = np.corrcoef(real, pred)[:9, 9:]
    expected = np.mean((r < np.diag(r)).sum(0) / 8)
    assert metrics.two_way_identification(pred, real, np.arange(9)) == pytest.approx(expected)
    assert metrics.two_way_identification(pred, real) == pytest.approx(expected)
    assert 0.5 < expected < 1.0


def test_identification_never_counts_a_repeat_of_the_same_image_against_it():
    real = np.random.default_rng(1).standard_normal((4, 10))
    rows = np.array([0, 0, 0, 1, 2, 3])  # image 0 reconstructed three times, perfectly
    assert metrics.two_way_identification(real[rows], real, rows) == 1.0
    # the chance pairing: another image, never the own one
    other = other_images(rows, 4, seed=3)
    assert np.all(other != rows)
    assert metrics.two_way_identification(real[other], real, rows) < 0.5
    with pytest.raises(ConfigError, match="rows must lie in"):
        metrics.two_way_identification(real, real, np.arange(4) + 1)


def test_correlation_distance_is_scipys():
    from scipy.spatial.distance import correlation

    a, b = np.random.default_rng(2).standard_normal((2, 5, 7))
    assert correlation_distance(a, b) == pytest.approx(
        np.mean([correlation(x, y) for x, y in zip(a, b, strict=True)])
    )


def test_without_weights_only_pixcorr_and_ssim_are_computed(tmp_path):
    seen = seen_images()
    rows = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    out = reconstruction_table(seen[rows], seen, rows, weights_dir=tmp_path, size=64)
    assert list(out["metrics"]) == list(RECON_METRICS)
    assert out["reconstructions"] == 8 and out["images"] == 6 and out["size"] == 64
    for name in ("PixCorr", "SSIM"):
        m = out["metrics"][name]
        assert m["computed"] and m["value"] == pytest.approx(1.0) and m["chance"] < 0.9
    absent = out["metrics"]["AlexNet(2)"]
    assert not absent["computed"] and "'alexnet.pth'" in absent["reason"]
    assert str(tmp_path) in absent["reason"]
    assert (
        "no --eval-weights"
        in reconstruction_table(seen, seen, np.arange(6), size=64)["metrics"]["SwAV"]["reason"]
    )


@pytest.mark.slow
def test_every_metric_on_random_weight_networks(weights_dir):
    """Perfect reconstructions: every network identifies them (its features are those of the
    seen image) and their distances are 0; reconstructions of other images score lower."""
    seen = seen_images(size=64)
    rows = np.array([0, 1, 2, 3, 4, 5, 2])
    kw = dict(weights_dir=weights_dir, size=64, clip_embedder="tiny-random")
    perfect = reconstruction_table(seen[rows], seen, rows, **kw)["metrics"]
    assert all(m["computed"] for m in perfect.values()), perfect
    for name in ("AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP"):
        assert perfect[name]["value"] == 1.0 and perfect[name]["chance"] == 0.5
    for name in ("EffNet-B", "SwAV"):
        assert perfect[name]["value"] == pytest.approx(0.0, abs=1e-3)  # float32 batches
        assert perfect[name]["chance"] > 0.0
    wrong = reconstruction_table(seen[other_images(rows, 6)], seen, rows, **kw)["metrics"]
    for name, higher_better in RECON_METRICS.items():
        if higher_better:
            assert wrong[name]["value"] < perfect[name]["value"], name
        else:
            assert wrong[name]["value"] > perfect[name]["value"], name


def test_bad_inputs_are_refused():
    seen = seen_images()
    with pytest.raises(ConfigError, match=">= 2 distinct seen images"):
        reconstruction_table(seen[:1], seen[:1], np.array([0]))
    with pytest.raises(ConfigError, match="rows must lie in"):
        reconstruction_table(seen, seen, np.arange(6) + 1)
