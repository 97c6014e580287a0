"""The hidden encoding model: unit-variance image signal, gains, semantic share, HRF peaks."""

from __future__ import annotations

import numpy as np

from replay_data.simulation_config import SimulationConfig

TINY = SimulationConfig.tiny()


def test_encoding_follows_its_definition(subject):
    enc = subject.encoding
    n_images, n_roi = len(subject.stimuli.images), TINY.n_roi
    assert enc.signal.shape == (n_images, n_roi) and enc.signal.dtype == np.float32
    np.testing.assert_allclose(enc.signal.std(axis=0), 1.0, rtol=1e-3)
    assert 0.15 - 1e-9 <= enc.semantic_share.min() and enc.semantic_share.max() <= 0.85 + 1e-9
    assert 0.7 < np.median(enc.gain) < 1.4
    spread = 3 * TINY.hrf_peak_sd
    assert enc.hrf_peak.min() >= max(3.0, TINY.hrf_peak_mean - spread) - 1e-9
    assert enc.hrf_peak.max() <= TINY.hrf_peak_mean + spread + 1e-9
    amp = enc.amplitudes([0, 1])
    expected = enc.gain * (TINY.mean_response_pct + TINY.signal_pct * enc.signal[[0, 1]])
    np.testing.assert_allclose(amp, expected, rtol=1e-6)
