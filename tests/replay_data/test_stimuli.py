"""Stimulus image set: offline, deterministic, distinct, and test never leaks into training."""

from __future__ import annotations

import numpy as np
import pytest

from replay_data.stimuli import (
    MAX_COVER,
    StimulusSet,
    available_sources,
    make_stimuli,
    pixel_features,
)
from rt_base.errors import ConfigError


@pytest.fixture(scope="module")
def stim() -> StimulusSet:
    return make_stimuli(12, 120, 4, seed=3, size=64)


def test_sources_load_offline():
    names = available_sources()
    assert len(names) >= 15
    for must in ("astronaut", "coffee", "chelsea", "camera", "moon", "stereo_motorcycle"):
        assert must in names


def test_shapes_and_order(stim):
    assert stim.images.shape == (136, 64, 64, 3) and stim.images.dtype == np.uint8
    assert list(stim.splits[:12]) == ["test"] * 12
    assert list(stim.splits[12:16]) == ["filler"] * 4
    assert set(stim.splits[16:]) == {"train"}
    np.testing.assert_array_equal(stim.ids("test"), np.arange(12))
    assert stim.boxes.shape == (136, 4)
    assert np.all((stim.boxes >= 0) & (stim.boxes <= 1))


def test_deterministic(stim):
    again = make_stimuli(12, 120, 4, seed=3, size=64)
    assert again.images.tobytes() == stim.images.tobytes()
    np.testing.assert_array_equal(again.sources, stim.sources)
    other = make_stimuli(12, 120, 4, seed=4, size=64)
    assert not np.array_equal(other.images, stim.images)


def test_images_are_distinct(stim):
    x = stim.images.reshape(len(stim.images), -1).astype(np.float32)
    sq = (x**2).sum(1)
    d2 = sq[:, None] + sq[None] - 2 * x @ x.T
    np.fill_diagonal(d2, np.inf)
    rms = np.sqrt(np.maximum(d2, 0) / x.shape[1])
    assert rms.min() > 3.0  # no duplicates or near-duplicates (grey levels)
    assert len(set(stim.sources)) >= 10  # drawn from many photos
    assert stim.images.std(axis=(1, 2, 3)).min() > 0  # no blank image


def test_test_images_never_in_training(stim):
    test = stim.splits == "test"
    other = ~test
    # Held-out photos serve only test images, and at least half of the test set.
    assert stim.heldout
    assert not set(stim.sources[other]) & set(stim.heldout)
    assert np.isin(stim.sources[test], stim.heldout).sum() >= test.sum() // 2
    # Test crops of shared photos are not covered by any training/filler crop of that photo.
    for i in np.flatnonzero(test & ~np.isin(stim.sources, stim.heldout)):
        t = stim.boxes[i]
        for j in np.flatnonzero(other & (stim.sources == stim.sources[i])):
            b = stim.boxes[j]
            dr = min(t[2], b[2]) - max(t[0], b[0])
            dc = min(t[3], b[3]) - max(t[1], b[1])
            cover = max(dr, 0) * max(dc, 0) / ((t[2] - t[0]) * (t[3] - t[1]))
            assert cover <= MAX_COVER + 1e-9


def test_pixel_features(stim):
    f = pixel_features(stim.images)
    assert f.shape == (136, 192) and f.dtype == np.float32
    assert 0 <= f.min() and f.max() <= 1
    block = stim.images[0, :8, :8, 1].mean() / 255
    assert f[0].reshape(8, 8, 3)[0, 0, 1] == pytest.approx(block, abs=1e-6)
    with pytest.raises(ConfigError):
        pixel_features(np.zeros((1, 60, 60, 3), np.uint8))


def test_bad_counts():
    with pytest.raises(ConfigError, match="n_test_images"):
        make_stimuli(-1, 10)
