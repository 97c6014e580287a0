"""Simulation parameters: checks, presets and the derived run counts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from replay_data.simulation_config import (
    PRESETS,
    SimulationConfig,
    assign_test_images,
)
from rt_base.errors import ConfigError


def test_config_validation():
    with pytest.raises(ConfigError, match="'snr'.*-1"):
        SimulationConfig(snr=-1)
    with pytest.raises(ConfigError, match="'trials_per_run'"):
        SimulationConfig(trials_per_run=80)
    with pytest.raises(ConfigError, match="'n_train_trials'"):
        SimulationConfig(n_train_images=100, n_train_trials=1000)
    with pytest.raises(ConfigError, match="unknown simulation options.*'snrr'"):
        SimulationConfig.from_dict({"snrr": 1})
    assert SimulationConfig.from_dict({"snr": 0.7, "shape": [81, 104, 83]}).snr == 0.7


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"motion": "wild"}, "'motion' must be one of 'none', 'cooperative', got 'wild'"),
        ({"motion_drift_mm": -1}, "'motion_drift_mm'.*mm.*-1"),
        ({"motion_jumps": 1.5}, "'motion_jumps'"),
        ({"motion_jumps": 300}, "'motion_jumps'.*300"),
        ({"motion_jump_min_mm": 2.0}, "'motion_jump_max_mm' must be at least 'motion_jump_min_mm'"),
        ({"motion_rot_deg_per_mm": 5}, "'motion_rot_deg_per_mm'"),
    ],
)
def test_motion_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        SimulationConfig(**bad)


def test_presets_and_derived_counts():
    assert sorted(PRESETS) == ["subj01", "subj01-moving", "subj02", "tiny", "tiny-moving"]
    for still in ("subj01", "tiny"):
        cfg, moving = PRESETS[still](), PRESETS[f"{still}-moving"]()
        assert cfg.motion == "none" and moving.motion == "cooperative"
        assert replace(moving, name=cfg.name, motion="none") == cfg  # nothing else differs
    cfg = PRESETS["subj01"]()
    assert cfg == SimulationConfig.subj01() and cfg.trial_s == 4.0
    assert cfg.n_slots == 72 and cfg.n_test_runs == 3
    assert cfg.n_filler == 3 * 62 - 50 * 3
    runs = assign_test_images(50, 3, 62)
    subj02 = PRESETS["subj02"]()  # fine-tuning between runs: another subject, 4 test runs
    assert subj02.seed != cfg.seed and subj02.n_roi != cfg.n_roi
    assert subj02.n_test_runs == 4 and subj02.n_train_trials == 744
    assert len(runs) == 3 and sorted(i for r in runs for i in r) == sorted(list(range(50)) * 3)
