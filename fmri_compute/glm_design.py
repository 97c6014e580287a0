"""Single-trial GLM designs and the weight rows that turn data into single-trial betas.

A single-trial design has one HRF-convolved boxcar per trial (:func:`fmri_compute.hrf.
trial_regressors`) and nuisance columns for slow drift (:func:`drift_basis`).  Two estimators
read a trial's beta off such a design (``method``):

``"lsa"`` (default): ridge Least-Squares-All
    As GLMsingle does: every trial is its own column (plus slow drift) and the trial columns
    get a ridge penalty of ``ridge`` times their mean sum of squares (:func:`ridge_lsa_weights`;
    ``ridge=0`` is plain LSA).  At NSD timing (3 s image, 4 s onset-to-onset) the neighbours of
    a trial are then fitted explicitly instead of leaking into it; the ridge keeps the nearly
    collinear neighbours (and, online, the barely-started next trial) from amplifying noise.
``"lss"``: Least-Squares-Separate
    One small GLM per trial with its own column, one column for all other trials together,
    and drift (:func:`lss_weights`).  At a 4 s SOA the lumped column cannot absorb the
    neighbours, so even noise-free betas mix them (~1.7 a_i + 0.6 a_(i-1) + 0.6 a_(i+1)).

On a simulated NSD subject (replay_data.simulate, 15,724 voxels, ridge decoder to CLIP tokens,
50-way single-trial retrieval) ridge LSA with ``ridge=0.03`` raised offline top-1 from ~0.47
(LSS) to ~0.80 at SNR 0.5; LSS with the two neighbours as own columns reached ~0.58.  Online, a
window with a constant only (``drift_order=0``) worked far better than a linear drift, which is
collinear with the partly observed rise of the newest trial.

The offline whole-run estimator is :mod:`fmri_compute.offline_glm`, the online per-TR one
:mod:`fmri_compute.online_glm`; both build their designs with :mod:`fmri_compute.hrf` regressors
at volume ``k``'s time ``k * tr``, so their betas share one scale (up to the ridge's shrinkage,
which is small for trials with full responses).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.legendre import legvander
from numpy.typing import ArrayLike

from rt_base.checks import check_choice, check_number

__all__ = [
    "DEFAULT_RIDGE",
    "METHODS",
    "check_method",
    "drift_basis",
    "lss_weights",
    "ridge_lsa_weights",
    "ridge_rows",
]

#: Single-trial estimators: ridge Least-Squares-All, Least-Squares-Separate (module docstring).
METHODS = ("lsa", "lss")
#: Default ridge of ``"lsa"``, relative to the trial columns' mean sum of squares.
DEFAULT_RIDGE = 0.03


def check_method(method: str, ridge: float) -> tuple[str, float]:
    """Check an estimator choice: ``method`` in :data:`METHODS`, ``ridge`` in ``[0, 100]``.

    Returns
    -------
    method : str
    ridge : float
    """
    method = check_choice(method, "method", METHODS)
    ridge = float(check_number(ridge, "ridge", minimum=0, maximum=100))
    return method, ridge


def drift_basis(
    times: ArrayLike, order: int, span: tuple[float, float] | None = None
) -> np.ndarray:
    """Legendre polynomials of degree ``0 .. order`` over a time span.

    Parameters
    ----------
    times : (T,) array
        Seconds.
    order : int
        Highest degree; 0 gives the constant only.
    span : (start, stop) or None
        Seconds mapped to ``[-1, 1]``; default the first and last of ``times``.

    Returns
    -------
    D : (T, order + 1) float64 array
    """
    order = int(check_number(order, "drift_order", minimum=0, integer=True))
    times = np.asarray(times, dtype=np.float64)
    if span is None:
        span = (times.min(), times.max()) if times.size else (0.0, 0.0)
    start, stop = span
    if times.size == 0 or stop - start <= 0:
        x = np.zeros_like(times)
    else:
        x = 2.0 * (times - start) / (stop - start) - 1.0
    return legvander(x, order)


def lss_weights(R: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Rows that map data to each trial's LSS (Least-Squares-Separate) beta.

    Parameters
    ----------
    R : (T, n) array
        Trial regressors.
    D : (T, q) array
        Nuisance columns (drift, constant).

    Returns
    -------
    W : (n, T) float64 array
        ``W @ Y`` gives the ``(n, V)`` betas of data ``Y : (T, V)``.  Trials whose regressor
        is zero over these frames get a row of NaN.
    """
    T, n = R.shape
    X = np.empty((n, T, 2 + D.shape[1]))
    X[:, :, 0] = R.T
    X[:, :, 1] = (R.sum(axis=1, keepdims=True) - R).T
    X[:, :, 2:] = D
    W = np.linalg.pinv(X)[:, 0, :]
    W[~np.any(R != 0, axis=0)] = np.nan
    return W


def ridge_rows(X: np.ndarray, n_trials: int, ridge: float) -> np.ndarray:
    """Rows mapping data to the first ``n_trials`` coefficients of a ridge fit of ``X``.

    The penalty ``ridge * mean(sum of squares of the trial columns)`` applies to the first
    ``n_trials`` columns only (drift is not shrunk).  ``ridge = 0`` is ordinary least squares
    (minimum-norm where columns are collinear).

    Parameters
    ----------
    X : (T, p) float array
        Design: the ``n_trials`` trial columns first, then the nuisance columns.
    n_trials : int
        Number of leading (penalised) trial columns, ``<= p``.
    ridge : float
        Penalty relative to the trial columns' mean sum of squares; ``>= 0``.

    Returns
    -------
    W : (n_trials, T) float64 array
        ``W @ Y`` gives the trial coefficients of data ``Y : (T, V)``.
    """
    if n_trials == 0:
        return np.zeros((0, X.shape[0]))
    G = X.T @ X
    if ridge > 0:
        scale = float(np.mean(np.sum(X[:, :n_trials] ** 2, axis=0)))
        idx = np.arange(n_trials)
        G[idx, idx] += ridge * scale
        try:
            return np.linalg.solve(G, X.T)[:n_trials]
        except np.linalg.LinAlgError:  # drift columns collinear (e.g. fewer rows than columns)
            pass
    return (np.linalg.pinv(G) @ X.T)[:n_trials]


def ridge_lsa_weights(R: np.ndarray, D: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Rows that map data to each trial's ridge-LSA (Least-Squares-All) beta.

    Parameters
    ----------
    R : (T, n) array
        Trial regressors.
    D : (T, q) array
        Nuisance columns (drift, constant); not penalised.
    ridge : float
        Penalty on the trial columns, relative to their mean sum of squares (0: plain LSA).

    Returns
    -------
    W : (n, T) float64 array
        ``W @ Y`` gives the ``(n, V)`` betas.  Trials whose regressor is zero over these frames
        get a row of NaN (and are left out of the fit).
    """
    ridge = float(check_number(ridge, "ridge", minimum=0, maximum=100))
    live = np.any(R != 0, axis=0)
    W = np.full((R.shape[1], R.shape[0]), np.nan)
    X = np.column_stack([R[:, live], D])
    W[live] = ridge_rows(X, int(live.sum()), ridge)
    return W
