import numpy as np

from mindeye_models.ranks import top_k_accuracy, true_ranks


def test_true_ranks_per_row_and_single():
    ids = np.array([[3, 1, 2], [2, 3, 1], [5, 6, 7]])
    assert true_ranks(ids, [1, 2, 1]).tolist() == [2, 1, 0]
    assert true_ranks(np.array([4, 9]), 9) == 2
    assert true_ranks(np.array([4, 9]), None) == 0
    assert true_ranks(ids, [None, -1, 7]).tolist() == [0, 0, 3]


def test_top_k_accuracy_counts_scored_trials_only():
    assert top_k_accuracy(np.array([1, 2, 6, 0]), 1) == 1 / 3
    assert top_k_accuracy(np.array([1, 2, 6, 0]), 5) == 2 / 3
    assert top_k_accuracy(np.array([0, 0]), 1) is None
