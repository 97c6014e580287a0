"""MindEye's retrieval protocol: top-1 both ways among 300 random samples, 30 draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.eval_retrieval import (
    repetition_average,
    retrieval_accuracy,
    top1_both_ways,
)
from rt_base.errors import ConfigError


def _embeddings(n, dim=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4, dim)).astype(np.float32)


def test_top1_both_ways_matches_a_brute_force_argmax():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((12, 8))
    brain = images + 1.5 * rng.standard_normal((12, 8))  # some right, some wrong
    fwd, bwd = top1_both_ways(torch.tensor(brain), torch.tensor(images))
    b = brain / np.linalg.norm(brain, axis=1, keepdims=True)
    m = images / np.linalg.norm(images, axis=1, keepdims=True)
    sims = b @ m.T
    assert np.array_equal(fwd, sims.argmax(1) == np.arange(12))
    assert np.array_equal(bwd, sims.argmax(0) == np.arange(12))
    assert 0 < fwd.sum() < 12 and not np.array_equal(fwd, bwd)


def test_a_tie_with_another_candidate_is_not_a_hit():
    images = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    fwd, bwd = top1_both_ways(torch.tensor(images), torch.tensor(images))
    assert fwd.tolist() == [False, False, True] and bwd.tolist() == [False, False, True]


def test_perfect_predictions_score_one_with_300_of_more_images():
    emb = _embeddings(400)
    out = retrieval_accuracy(emb, emb, seed=3)
    assert out["ways"] == 300 and out["draws"] == 30 and out["chance"] == pytest.approx(1 / 300)
    for d in ("brain_to_image", "image_to_brain"):
        assert out[d]["mean"] == 1.0 and out[d]["interval"] == "normal over draws"


def test_random_predictions_score_near_chance_with_a_normal_interval_over_draws():
    out = retrieval_accuracy(_embeddings(400, seed=1), _embeddings(400, seed=2), seed=0)
    for d in ("brain_to_image", "image_to_brain"):
        r = out[d]
        assert r["mean"] < 0.03  # chance 1/300
        assert r["ci_low"] < r["mean"] < r["ci_high"]
        # the papers' interval: mean +/- 1.96 standard errors of the 30 draws
        assert r["ci_high"] - r["mean"] == pytest.approx(r["mean"] - r["ci_low"])


def test_fewer_images_than_the_sample_are_n_way_with_a_binomial_interval():
    images = _embeddings(20)
    brain = images.copy()
    brain[:5] = _embeddings(5, seed=9)  # 5 of 20 wrong
    out = retrieval_accuracy(brain, images)
    assert out["ways"] == 20 and out["chance"] == pytest.approx(0.05)
    r = out["brain_to_image"]
    assert r["mean"] <= 15 / 20 and r["interval"] == "binomial over images"
    assert r["ci_low"] < r["mean"] < r["ci_high"] <= 1.0


def test_single_trials_take_one_random_repetition_per_image_and_draw():
    images = _embeddings(10, seed=4)
    trial_image = np.repeat(np.arange(10), 3)
    brain = images[trial_image].copy()
    wrong = np.arange(0, 30, 3)  # the first repetition of every image predicts noise
    brain[wrong] = _embeddings(10, seed=5)
    out = retrieval_accuracy(brain, images, trial_image, draws=200, seed=0)
    assert out["trials"] == 30 and out["images"] == 10 and out["ways"] == 10
    # a draw is right for the images whose picked trial is not the bad one: about 2/3
    assert out["brain_to_image"]["mean"] == pytest.approx(2 / 3, abs=0.05)
    # the averaged responses would be scored with trial_image=None: one row per image
    assert retrieval_accuracy(images, images)["brain_to_image"]["mean"] == 1.0


def test_repetition_average_means_the_trials_of_each_image():
    responses = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = np.array([7, 3, 7, 3, 7, 5])
    means, uniq, counts = repetition_average(responses, ids)
    assert uniq.tolist() == [3, 5, 7] and counts.tolist() == [2, 1, 3]
    np.testing.assert_allclose(means[0], responses[[1, 3]].mean(0))
    np.testing.assert_allclose(means[2], responses[[0, 2, 4]].mean(0))


def test_bad_inputs_are_refused_with_clear_errors():
    emb = _embeddings(4)
    with pytest.raises(ConfigError, match="one image row per trial"):
        retrieval_accuracy(emb, emb, np.array([0, 1]))
    with pytest.raises(ConfigError, match=r"images \[3\] have none"):
        retrieval_accuracy(emb[:3], emb, np.array([0, 1, 2]))
    with pytest.raises(ConfigError, match="'draws'"):
        retrieval_accuracy(emb, emb, draws=0)
    with pytest.raises(ConfigError, match="one image id per trial"):
        repetition_average(np.zeros((3, 2)), np.arange(2))
