"""Simulated trial schedules: NSD timing, test images repeated across runs."""

from __future__ import annotations

import numpy as np
import pytest

from replay_data.simulation_config import SimulationConfig
from replay_data.simulation_schedule import schedule_test_runs
from replay_data.stimuli import StimulusSet

TINY = SimulationConfig.tiny()


def _check_timing(cfg, runs, n_test, reps):
    seen = {}
    for events in runs:
        onsets = np.array([e.onset for e in events])
        slots = (onsets - cfg.lead_in_s) / 4.0
        np.testing.assert_allclose(slots, np.round(slots), atol=1e-9)  # on the 4 s grid
        assert np.all(np.diff(onsets) >= 4.0 - 1e-9)
        assert all(e.duration == 3.0 for e in events)
        assert onsets[-1] + 3.0 + 8.0 <= cfg.n_volumes * cfg.tr
        assert [e.trial for e in events] == list(range(len(events)))
        assert len(events) == cfg.trials_per_run
        for e in events:
            seen.setdefault(e.image_id, []).append(e)
    test = {i: ev for i, ev in seen.items() if ev[0].split == "test"}
    assert sorted(test) == list(range(n_test))
    for ev in test.values():
        assert [e.repetition for e in ev] == list(range(1, reps + 1))
    return test


def test_events_timing_tiny(tiny):
    ds, _ = tiny
    runs = [ds.events(r) for r in ds.runs]
    _check_timing(TINY, runs, TINY.n_test_images, TINY.test_reps)
    splits = {e.split for ev in runs for e in ev}
    assert splits == {"test", "filler"}


def test_events_timing_subj01():
    cfg = SimulationConfig.subj01()
    assert cfg.n_volumes * cfg.tr == pytest.approx(300.8)
    splits = np.array(["test"] * 50 + ["filler"] * cfg.n_filler + ["train"] * 10)
    stim = StimulusSet(
        np.zeros((len(splits), 1, 1, 3), np.uint8), splits, splits, np.zeros((len(splits), 4)), ()
    )
    runs = schedule_test_runs(cfg, stim, np.random.default_rng(0))
    assert len(runs) == cfg.n_test_runs == 3
    test = _check_timing(cfg, runs, 50, 3)
    run_of = {id(e): k for k, ev in enumerate(runs) for e in ev}
    for ev in test.values():  # each repeat in a different run
        assert len({run_of[id(e)] for e in ev}) == 3
