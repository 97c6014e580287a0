"""Replay dataset format: the records and the default grid."""

from __future__ import annotations

import numpy as np

from replay_data.dataset_format import EVENT_COLUMNS, Event, default_affine


def test_default_affine_centres_the_grid():
    aff = default_affine((5, 7, 3), 2.0)
    np.testing.assert_array_equal(np.diag(aff), [2.0, 2.0, 2.0, 1.0])
    centre = aff @ np.array([2.0, 3.0, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0)


def test_event_defaults_to_an_image_trial():
    event = Event(3.0, 3.0, 7, 1, "test", 0)
    assert event.trial_type == "image"
    assert set(EVENT_COLUMNS) - {"onset", "duration", "image_id", "repetition", "split"} == {
        "trial_type"
    }
