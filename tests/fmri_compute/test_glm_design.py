"""Single-trial GLM designs and weight rows (fmri_compute.glm_design)."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_compute.glm_design import (
    METHODS,
    check_method,
    drift_basis,
    lss_weights,
    ridge_lsa_weights,
    ridge_rows,
)
from fmri_compute.hrf import trial_regressors, volume_times
from rt_base.errors import ConfigError
from tests.fmri_compute.synthetic_runs import TR, ridge_fit


def test_drift_basis_spans_minus_one_to_one():
    t = volume_times(20, TR)
    D = drift_basis(t, 2)
    assert D.shape == (20, 3)
    np.testing.assert_array_equal(D[:, 0], 1.0)
    np.testing.assert_allclose(D[[0, -1], 1], [-1.0, 1.0])
    # A span wider than the times maps them inside [-1, 1] (the online window's own span).
    inner = drift_basis(t, 1, span=(-t[-1], t[-1]))[:, 1]
    np.testing.assert_allclose(inner[[0, -1]], [0.0, 1.0])
    assert drift_basis(t[:1], 2).shape == (1, 3)
    with pytest.raises(ConfigError, match="'drift_order'"):
        drift_basis(t, -1)


def test_weight_rows_leave_dead_trials_out():
    t = volume_times(60, TR)
    R = trial_regressors([5.0, 30.0, 500.0], [3.0, 3.0, 3.0], t, TR)
    D = drift_basis(t, 1)
    Y = np.random.default_rng(0).standard_normal((60, 4))
    for W in (lss_weights(R, D), ridge_lsa_weights(R, D, 0.03)):
        assert W.shape == (3, 60)
        assert np.all(np.isfinite(W[:2])) and np.all(np.isnan(W[2]))
    W = ridge_lsa_weights(R, D, 0.03)
    ref = ridge_fit(np.column_stack([R[:, :2], D]), Y, 2, 0.03)[:2]
    np.testing.assert_allclose(W[:2] @ Y, ref, rtol=1e-8, atol=1e-10)
    assert ridge_rows(D, 0, 0.03).shape == (0, 60)


def test_check_method():
    assert METHODS == ("lsa", "lss")
    assert check_method("lss", 0) == ("lss", 0.0)
    with pytest.raises(ConfigError, match="'method' must be one of 'lsa', 'lss'"):
        check_method("glmsingle", 0.03)
    with pytest.raises(ConfigError, match="'ridge'"):
        check_method("lsa", 101)
