"""Where the true image ranks among the retrieved ones: the one definition of a retrieval hit
(used by training's evaluation, the decode stage and the session summary).  numpy only."""

from __future__ import annotations

import numpy as np


def true_ranks(ranked_ids: np.ndarray, true_ids) -> np.ndarray:
    """The 1-based rank of each trial's true image among its retrieved ids; 0 where it is absent.

    Parameters
    ----------
    ranked_ids : (N, K) or (K,) int array
        Retrieved image ids, best first (from :meth:`ImageBank.retrieve`).
    true_ids : (N,) ints, or one int for a (K,) row; None or negative where unknown.

    Returns
    -------
    (N,) int array (or an int for a single row): 1 = top-1; 0 = not among ``ranked_ids``
    (the image is not in the bank, or outside the top K).
    """
    ids = np.asarray(ranked_ids)
    single = ids.ndim == 1
    ids = np.atleast_2d(ids)
    truth = np.array(
        [-1 if t is None else int(t) for t in np.atleast_1d(np.asarray(true_ids, dtype=object))],
        dtype=np.int64,
    )
    hits = (ids == truth[:, None]) & (truth[:, None] >= 0)
    ranks = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    return int(ranks[0]) if single else ranks


def top_k_accuracy(ranks: np.ndarray, k: int) -> float | None:
    """Fraction of scored trials (rank > 0) whose rank is <= ``k``; None with none scored."""
    ranks = np.asarray(ranks)
    scored = ranks[ranks > 0]
    return float(np.mean(scored <= k)) if scored.size else None
