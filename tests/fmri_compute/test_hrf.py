from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc

from fmri_compute.hrf import (
    canonical_hrf,
    double_gamma,
    trial_regressor,
    trial_regressors,
    volume_times,
)
from rt_base.errors import ConfigError

TR = 1.6


def boxcar_response(onset, duration, t, peak=6.0, undershoot=16.0, ratio=1 / 6):
    """Exact boxcar * unit-area double gamma, from the gamma CDFs."""

    def cumulative(s):
        s = np.maximum(s, 0.0)
        return (gammainc(peak, s) - ratio * gammainc(undershoot, s)) / (1 - ratio)

    return cumulative(t - onset) - cumulative(t - onset - duration)


def test_canonical_hrf_peaks_near_5s_and_has_unit_area():
    dt = 0.01
    h = canonical_hrf(dt)
    assert h.shape == (3200,)
    assert h[0] == 0.0
    assert 4.8 <= np.argmax(h) * dt <= 5.2
    assert h.sum() * dt == pytest.approx(1.0, abs=2e-3)
    # The undershoot: negative, deepest between 12 and 20 s.
    assert h.min() < 0
    assert 12.0 <= np.argmin(h) * dt <= 20.0


def test_peak_parameter_shifts_the_maximum():
    dt = 0.01
    for peak in (4.5, 6.0, 7.0):
        t_max = np.argmax(canonical_hrf(dt, peak=peak)) * dt
        assert t_max == pytest.approx(peak - 1.0, abs=0.05)


def test_double_gamma_is_causal():
    assert np.all(double_gamma(np.array([-3.0, -0.1, 0.0])) == 0.0)
    assert double_gamma(5.0) > 0


def test_volume_times_are_acquisition_starts():
    np.testing.assert_allclose(volume_times(4, TR), [0.0, 1.6, 3.2, 4.8])
    np.testing.assert_allclose(volume_times(2, TR, start=10), [16.0, 17.6])


def test_boxcar_regressor_matches_exact_convolution():
    t = volume_times(188, TR)
    onsets = [3.0, 7.3, 100.05, 250.0]
    durations = [3.0, 3.0, 0.5, 3.0]
    X = trial_regressors(onsets, durations, t, TR)
    assert X.shape == (188, 4)
    exact = np.column_stack(
        [boxcar_response(o, d, t) for o, d in zip(onsets, durations, strict=True)]
    )
    np.testing.assert_allclose(X, exact, atol=1e-3 * exact.max())
    # A long block reaches a plateau of 1 (unit-area HRF).
    block = trial_regressor(0.0, 100.0, t, TR)
    assert block[40] == pytest.approx(1.0, abs=2e-3)


def test_zero_duration_is_the_hrf_itself():
    t = volume_times(30, TR)
    x = trial_regressor(3.03, 0.0, t, TR)
    h = double_gamma(t - 3.03)
    np.testing.assert_allclose(x, h, atol=2e-3 * h.max())


def test_regressor_is_zero_until_onset():
    t = volume_times(40, TR)
    x = trial_regressor(10.0, 3.0, t, TR)
    assert np.all(x[t <= 10.0] == 0.0)
    assert np.all(x[(t > 11.0) & (t < 20.0)] > 0)


def test_values_do_not_depend_on_which_frames_are_asked_for():
    # The online estimator reads a few frames; the offline GLM reads the whole run.
    onsets, durations = [4.0, 8.0, 12.0], [3.0, 3.0, 3.0]
    full = trial_regressors(onsets, durations, volume_times(188, TR), TR)
    rows = np.array([5, 6, 9, 10, 11])
    part = trial_regressors(onsets, durations, rows * TR, TR)
    np.testing.assert_allclose(part, full[rows], atol=1e-12)


def test_array_of_peaks_gives_one_design_per_peak():
    t = volume_times(50, TR)
    peaks = np.array([4.5, 6.0, 7.0])
    X = trial_regressors([4.0, 20.0], [3.0, 3.0], t, TR, peak=peaks)
    assert X.shape == (3, 50, 2)
    for p, pk in enumerate(peaks):
        np.testing.assert_allclose(X[p], trial_regressors([4.0, 20.0], [3.0, 3.0], t, TR, peak=pk))
    # A later HRF peaks later.
    assert np.argmax(X[0][:, 0]) < np.argmax(X[2][:, 0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"tr": -1.6}, "'tr'"),
        ({"tr": 0}, "'tr'"),
        ({"oversampling": 0}, "'oversampling'"),
        ({"peak": 0.5}, "'peak'"),
        ({"durations": [-1.0]}, "'durations'"),
        ({"durations": [3.0, 3.0]}, "'onsets' and 'durations'"),
        ({"onsets": [np.nan]}, "'onsets'"),
    ],
)
def test_bad_options_name_the_argument(kwargs, name):
    args = {"onsets": [4.0], "durations": [3.0], "frame_times": volume_times(10, TR), "tr": TR}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=name):
        trial_regressors(**args)


def test_bad_hrf_shape_and_step():
    with pytest.raises(ConfigError, match="'dt'"):
        canonical_hrf(0)
    with pytest.raises(ConfigError, match="'ratio'"):
        canonical_hrf(0.1, ratio=1.0)
    with pytest.raises(ConfigError, match="'tr' must be .* got -1.6"):
        volume_times(3, -1.6)
