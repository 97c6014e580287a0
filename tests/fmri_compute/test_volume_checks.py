"""Per-volume checks: every kind of bad volume is found, clean runs give no false alarm."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmri_compute.volume_checks import REASONS, VolumeChecker, VolumeCheckOptions
from rt_base.errors import ConfigError

SHAPE = (16, 18, 12)


def head_mask() -> np.ndarray:
    """An ellipsoid 'brain' filling about half of the grid."""
    idx = np.indices(SHAPE, dtype=np.float64)
    c = (np.asarray(SHAPE, float) - 1)[:, None, None, None] / 2
    r = (((idx - c) / (0.45 * np.asarray(SHAPE, float))[:, None, None, None]) ** 2).sum(0)
    return r <= 1.0


def clean_run(seed=0, T=80, noise=0.01, drift=0.02) -> np.ndarray:
    """(T, X, Y, Z) float32 scanner-like volumes: anatomy ~1000, slow drift, 1 % noise."""
    rng = np.random.default_rng(seed)
    mask = head_mask()
    anatomy = np.where(mask, rng.uniform(600, 1400, SHAPE), 0.0)
    t = np.linspace(0, 1, T)[:, None, None, None]
    vols = anatomy * (1 + drift * t) * (1 + noise * rng.standard_normal((T, *SHAPE)))
    return vols.astype(np.float32)


def verdicts(checker: VolumeChecker, vols) -> list:
    return [checker.check(v) for v in vols]


def test_a_clean_run_has_no_bad_volume():
    checker = VolumeChecker(head_mask())
    for seed in range(3):
        checker.reset()
        assert not any(v.bad for v in verdicts(checker, clean_run(seed)))
    assert checker.n_good == checker.options.history


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_anywhere_are_found_and_counted(value):
    vols = clean_run()
    vols[20, 0, 0, 0] = value  # outside the mask: motion correction would still read it
    vols[20, 8, 9, 6] = value
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert found[20].reasons == ("nonfinite",)
    assert found[20].details == {"nonfinite": 2}
    assert [i for i, v in enumerate(found) if v.bad] == [20]


def test_a_zero_volume_is_a_dropout_even_first():
    vols = clean_run()
    vols[0] = 0.0
    vols[30] = 0.0
    vols[40] *= 0.3  # most signal gone, but not zero
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert [i for i, v in enumerate(found) if v.bad] == [0, 30, 40]
    assert all(found[i].reasons == ("dropout",) for i in (0, 30, 40))
    assert found[0].details == {"zero_fraction": 1.0}
    assert found[40].details["mean_ratio"] == pytest.approx(0.3, abs=0.02)


def test_a_dropped_slice_is_found_with_its_index():
    vols = clean_run()
    vols[25, :, :, 5] *= 0.05
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert [i for i, v in enumerate(found) if v.bad] == [25]
    assert found[25].reasons == ("dropped_slice",)
    assert found[25].details["slices"] == [5]
    assert found[25].details["slice_ratios"][0] == pytest.approx(0.05, abs=0.01)


def test_the_slice_axis_is_an_option():
    vols = clean_run()
    vols[25, 7, :, :] = 0.0
    default = verdicts(VolumeChecker(head_mask()), vols)
    along_x = verdicts(VolumeChecker(head_mask(), VolumeCheckOptions(slice_axis=0)), vols)
    assert along_x[25].reasons == ("dropped_slice",) and along_x[25].details["slices"] == [7]
    assert default[25].reasons != ("dropped_slice",) or default[25].details["slices"] != [7]


def test_a_spike_up_or_down_is_found_and_the_next_volume_is_good():
    vols = clean_run()
    vols[30] *= 1.10
    vols[50] *= 0.92
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert [i for i, v in enumerate(found) if v.bad] == [30, 50]
    assert found[30].reasons == found[50].reasons == ("spike",)
    assert found[30].details["change"] == pytest.approx(0.10, abs=0.01)
    assert found[50].details["change"] == pytest.approx(-0.08, abs=0.01)
    assert found[30].details["spike_z"] > 5


def test_a_spike_during_the_warmup_is_not_judged():
    vols = clean_run()
    vols[2] *= 1.10  # before 'warmup' jumps are known: only the other checks apply
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert not found[2].bad


def test_a_lasting_level_step_becomes_the_new_baseline():
    vols = clean_run()
    vols[40:] *= 1.2
    checker = VolumeChecker(head_mask())
    found = verdicts(checker, vols)
    bad = [i for i, v in enumerate(found) if v.bad]
    assert bad == list(range(40, 40 + checker.options.warmup))
    assert checker.rebaselined == 1


def test_bad_volumes_never_move_the_reference():
    vols = clean_run()
    vols[30:33] = 0.0  # three dropouts in a row: the reference stays the good volumes'
    checker = VolumeChecker(head_mask())
    found = verdicts(checker, vols)
    assert [i for i, v in enumerate(found) if v.bad] == [30, 31, 32]


def test_verdicts_are_json_ready_and_described():
    vols = clean_run()
    vols[30, :, :, 5] = 0.0
    vols[40] *= 1.2
    vols[50, 1, 1, 1] = np.nan
    found = verdicts(VolumeChecker(head_mask()), vols)
    for i in (30, 40, 50):
        assert found[i].reasons[0] in REASONS
        json.dumps(found[i].details, allow_nan=False)
        assert found[i].reasons[0] in found[i].describe()
    assert found[0].describe() == "good"


def test_an_integer_volume_is_checked_too():
    vols = clean_run().round().astype(np.int16)
    vols[30] = 0
    found = verdicts(VolumeChecker(head_mask()), vols)
    assert [i for i, v in enumerate(found) if v.bad] == [30]


def test_a_large_mask_is_subsampled():
    checker = VolumeChecker(np.ones((60, 60, 60), bool), VolumeCheckOptions(max_voxels=5000))
    assert 4000 < checker.n_voxels <= 5000
    vol = np.full((60, 60, 60), 100.0, np.float32)
    assert not checker.check(vol).bad


def test_a_volume_of_another_shape_is_refused():
    with pytest.raises(ConfigError, match="shape"):
        VolumeChecker(head_mask()).check(np.zeros((4, 4, 4), np.float32))


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("dropout_ratio", 0.0, "dropout_ratio"),
        ("dropout_ratio", 1.0, "dropout_ratio"),
        ("slice_drop_ratio", -1, "slice_drop_ratio"),
        ("spike_z", 0, "spike_z"),
        ("spike_min_change", "x", "spike_min_change"),
        ("warmup", 2, "warmup"),
        ("history", 3, "history"),
        ("slice_axis", 3, "slice_axis"),
        ("max_voxels", 10, "max_voxels"),
        ("min_slice_voxels", 0, "min_slice_voxels"),
    ],
)
def test_bad_options_name_the_option(option, value, match):
    with pytest.raises(ConfigError, match=match):
        VolumeCheckOptions(**{option: value})


def test_an_empty_mask_is_refused():
    with pytest.raises(ConfigError, match="mask"):
        VolumeChecker(np.zeros(SHAPE, bool))
