"""The records the model hands to the widgets (:mod:`gui.state`)."""

from __future__ import annotations

import pytest

from gui.state import Accuracy, ReconStage, TrialInfo, behind_text


def test_accuracy_rates_are_none_until_a_trial_is_scored():
    a = Accuracy()
    assert (a.top1_rate, a.topk_rate, a.chance, a.mean_rank) == (None, None, None, None)
    a = Accuracy(scored=4, top1=1, topk=3, k=5, ways=8, decoded=6, rank_sum=10)
    assert (a.top1_rate, a.topk_rate, a.chance, a.mean_rank) == (0.25, 0.75, 0.125, 2.5)


def test_a_trial_is_correct_only_once_decoded_and_scored():
    trial = TrialInfo(run="run-01", index=0, onset=0.0, duration=1.0, image_id=3)
    assert trial.correct is None
    trial.decoded, trial.rank = True, None
    assert trial.correct is None
    trial.rank = 1
    assert trial.correct is True
    trial.rank = 2
    assert trial.correct is False


@pytest.mark.parametrize(
    ("backlog", "behind_s", "text"),
    [(0, 5.0, ""), (-1, None, ""), (1, None, "1 trial behind"), (2, 0.0, "2 trials behind"),
     (3, 4.24, "3 trials behind (4.2 s)")],
)  # fmt: skip
def test_behind_text(backlog, behind_s, text):
    assert behind_text(backlog, behind_s) == text
    assert ReconStage("ok", backlog=backlog, behind_s=behind_s).behind == text
